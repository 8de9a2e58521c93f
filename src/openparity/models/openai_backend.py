"""Backend `openai`: any OpenAI-compatible server (vLLM, SGLang, Ollama, llama.cpp server,
OpenAI, DeepSeek...) over the OpenAI HTTP API. Retries honour Retry-After and every failure
ends in a clear error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from openparity.errors import OpenparityError
from openparity.models.base import ChatModel
from openparity.models.chat_body import completion_from_body, first_choice_text
from openparity.models.errors import (
    BackendUnavailableError,
    MissingAPIKeyError,
    ModelCallError,
    ModelConfigError,
    UnknownModelError,
    UnsupportedCapabilityError,
)
from openparity.models.retry import RETRYABLE_STATUS, RetryPolicy, retry_after_seconds
from openparity.models.spec import ModelSpec
from openparity.models.types import (
    ChatRequest,
    Completion,
    Loglikelihood,
    LoglikelihoodRequest,
    StreamChunk,
)
from openparity.models.wire import (
    WireClient,
    WireConfigError,
    WireConnectionError,
    WireProtocolError,
    WireStatusError,
    WireStreamCutError,
    WireTimeoutError,
)


class OpenAICompatibleModel(ChatModel):
    """A model behind an OpenAI-compatible HTTP API."""

    def __init__(self, spec: ModelSpec, *, retry: RetryPolicy | None = None) -> None:
        super().__init__(spec)
        self.retry = retry or RetryPolicy(max_retries=spec.max_retries)
        try:
            self._client = WireClient(
                str(spec.base_url),
                spec.api_key(),
                timeout_s=spec.timeout_s,
                connect_timeout_s=min(10.0, spec.timeout_s),
            )
        except WireConfigError as exc:
            raise ModelConfigError(f"{spec.name}: {exc}") from None
        # The official API wants max_completion_tokens (reasoning models reject max_tokens);
        # most self-hosted servers only know max_tokens.
        official = bool(spec.base_url and "api.openai.com" in spec.base_url)
        self._token_param = "max_completion_tokens" if official else "max_tokens"

    def _chat_body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            **request.extra,
            "model": self.spec.model,
            "messages": [dict(m) for m in request.messages],
        }
        sent = {
            self._token_param: request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        body.update((name, value) for name, value in sent.items() if value is not None)
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        if request.logprobs:
            body["logprobs"] = True
            if request.top_logprobs:
                body["top_logprobs"] = request.top_logprobs
        return body

    async def generate(self, request: ChatRequest) -> Completion:
        body = self._chat_body(request)
        started = time.perf_counter()
        data = await self._call("/chat/completions", body)
        latency = time.perf_counter() - started
        try:
            return completion_from_body(
                data,
                model=self.name,
                latency_s=latency,
                cost=self.spec.cost,
                want_logprobs=request.logprobs,
            )
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ModelCallError(
                f"{self.name} answered without a chat completion: {str(data)[:160]}"
            ) from None

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Any other endpoint of the API (/embeddings, /completions), body and answer as JSON."""
        try:
            return await self._call(path, {**body, "model": self.spec.model})
        except (ValueError, TypeError) as exc:  # a body that cannot be sent as JSON
            raise ModelCallError(f"cannot send that body to {self.name} ({exc})") from None

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """Server-sent events from /chat/completions, one chunk each (the event included; the
        text is the first choice's content). A stream is not retried once it has begun.
        A stream that delivered a `finish_reason` is complete even when the server closes it
        without `data: [DONE]` (some do; the `openai` SDK accepts it); one that ends without a
        `finish_reason` raises ModelCallError(reason="stream_cut")."""
        body = {
            **self._chat_body(request),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        finish: str | None = None
        usage: tuple[int, int] | None = None
        try:
            async for event in self._client.stream("/chat/completions", body):
                if "error" in event:
                    detail = _short(WireStatusError(200, {}, event).detail())
                    raise ModelCallError(
                        f"{self.name} failed mid-stream ({detail})", reason="upstream_error"
                    )
                if event.get("usage"):
                    counts = event["usage"]
                    usage = (
                        int(counts.get("prompt_tokens") or 0),
                        int(counts.get("completion_tokens") or 0),
                    )
                for choice in event.get("choices") or ():
                    finish = choice.get("finish_reason") or finish
                yield StreamChunk(first_choice_text(event), event=event)
        except WireStatusError as exc:
            raise self._status_error(exc) from None
        except WireStreamCutError as exc:
            if finish is None:
                raise ModelCallError(
                    f"{self.name} at {self.spec.shown_url} cut the stream ({_short(exc)})",
                    reason="stream_cut",
                ) from None
        except (WireConnectionError, WireTimeoutError, WireProtocolError) as exc:
            raise self._transport_error(exc) from None
        yield StreamChunk("", finish_reason=finish or "stop", usage=usage)

    async def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """Prompt log-likelihoods from the completions endpoint with echo + logprobs.

        vLLM supports this; chat-only APIs (OpenAI, DeepSeek) do not, and get an
        UnsupportedCapabilityError rather than a made-up number.
        """
        semaphore = asyncio.Semaphore(self.spec.max_concurrency)

        async def one(req: LoglikelihoodRequest) -> Loglikelihood:
            async with semaphore:
                return await self._loglikelihood_one(req)

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def _loglikelihood_one(self, req: LoglikelihoodRequest) -> Loglikelihood:
        if req.messages is not None:
            raise UnsupportedCapabilityError(
                f"{self.name} cannot score a chat reply's likelihood: the completions endpoint"
                " does not apply the model's chat template",
                hint="score the checkpoint as hf:PATH or local:PATH.gguf, or use a generative task",
            )
        body = {
            "model": self.spec.model,
            "prompt": req.context + req.continuation,
            "max_tokens": 1,
            "temperature": 0.0,
            "echo": True,
            "logprobs": 1,
        }
        try:
            data = await self._call("/completions", body)
            lp = data["choices"][0]["logprobs"]
            offsets, tokens, values = lp["text_offset"], lp["tokens"], lp["token_logprobs"]
            tops = lp.get("top_logprobs") or [None] * len(tokens)
        except (KeyError, IndexError, TypeError, ModelCallError, UnknownModelError) as exc:
            detail = exc.one_line() if isinstance(exc, OpenparityError) else repr(exc)
            raise UnsupportedCapabilityError(
                f"{self.name} did not return prompt logprobs ({detail})",
                hint="use generative scoring, or a server that returns echo logprobs (vLLM)",
            ) from None
        if not offsets or not values:
            raise UnsupportedCapabilityError(f"{self.name} returned no prompt logprobs")
        # Echo returns the prompt tokens, then the one generated token: drop the latter.
        prompt_len = len(req.context) + len(req.continuation)
        total, greedy, count = 0.0, True, 0
        for offset, token, value, top in zip(offsets, tokens, values, tops, strict=False):
            if offset < len(req.context) or offset >= prompt_len:
                continue
            if value is None:
                raise UnsupportedCapabilityError(f"{self.name} gave a null logprob for {token!r}")
            total += value
            count += 1
            if top:
                greedy = greedy and max(top.values()) <= value + 1e-6
        return Loglikelihood(logprob=total, is_greedy=greedy, n_tokens=count)

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One API call with retries; every failure ends as an OpenparityError."""
        for attempt in range(self.retry.max_retries + 1):
            last = attempt == self.retry.max_retries
            try:
                return await self._client.post(path, body)
            except WireStatusError as exc:
                if exc.status not in RETRYABLE_STATUS or last:
                    raise self._status_error(exc) from None
                await asyncio.sleep(self.retry.delay(attempt, exc.headers))
            except (WireConnectionError, WireTimeoutError, WireProtocolError) as exc:
                if last:
                    raise self._transport_error(exc) from None
                await asyncio.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")

    def _status_error(self, exc: WireStatusError) -> OpenparityError:
        where = f"{self.name} at {self.spec.shown_url}"
        detail = _short(exc.detail())
        if exc.status in (401, 403):
            source = f"${self.spec.api_key_env}" if self.spec.api_key_env else "the API key"
            return MissingAPIKeyError(
                f"{where} rejected the key from {source} (HTTP {exc.status})",
                hint="check the key, or set api_key_env / api_key_file in models.yaml",
            )
        if exc.status == 404:
            return UnknownModelError(
                f"{where} has no model {self.spec.model!r} (HTTP 404: {detail})",
                hint="check the model name (GET /v1/models lists them) and that base_url ends"
                " in /v1",
            )
        reason = "http_429" if exc.status == 429 else f"http_{exc.status // 100}xx"
        retry_after = retry_after_seconds(exc.headers)
        if exc.status in RETRYABLE_STATUS:
            return ModelCallError(
                f"{where} kept failing: HTTP {exc.status} after"
                f" {self.retry.max_retries} retries ({detail})",
                hint="the server is overloaded or down; retry later or lower the concurrency",
                reason=reason,
                status=exc.status,
                retry_after_s=retry_after,
            )
        error = exc.body.get("error") if isinstance(exc.body, dict) else None
        return ModelCallError(
            f"{where} refused the request: HTTP {exc.status} ({detail})",
            reason=reason,
            status=exc.status,
            upstream_error=error if isinstance(error, dict) else {"message": exc.detail()},
        )

    def _transport_error(self, exc: Exception) -> OpenparityError:
        where = f"{self.name} at {self.spec.shown_url}"
        if isinstance(exc, WireTimeoutError):
            return ModelCallError(
                f"{where} did not answer within {self.spec.timeout_s:g}s"
                f" ({self.retry.max_retries} retries)",
                hint="raise timeout_s in models.yaml or lower the concurrency",
                reason="timeout",
            )
        if isinstance(exc, WireProtocolError):
            return ModelCallError(
                f"{where} sent a malformed answer ({_short(exc)})", reason="malformed"
            )
        return BackendUnavailableError(
            f"cannot reach {where} ({_short(exc)})",
            hint="start the server (e.g. openparity models serve-local) or fix base_url",
        )

    async def aclose(self) -> None:
        await self._client.close()


def _short(value: object, limit: int = 160) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
