"""Backend `openai`: any OpenAI-compatible server through the official async `openai` SDK.

vLLM, SGLang, Ollama, llama.cpp server, OpenAI, DeepSeek... Retries are ours (the SDK's are
off) so that every wait honours Retry-After and every failure ends in a clear error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import openai

from openparity.errors import OpenparityError
from openparity.models.base import ChatModel
from openparity.models.errors import (
    BackendUnavailableError,
    MissingAPIKeyError,
    ModelCallError,
    UnknownModelError,
    UnsupportedCapabilityError,
)
from openparity.models.retry import RETRYABLE_STATUS, RetryPolicy
from openparity.models.spec import ModelSpec
from openparity.models.types import (
    ChatRequest,
    Completion,
    Loglikelihood,
    LoglikelihoodRequest,
    TokenLogprob,
)

_NO_KEY = "not-needed"  # the SDK insists on a key; self-hosted servers ignore it


class OpenAICompatibleModel(ChatModel):
    """A model behind an OpenAI-compatible HTTP API."""

    def __init__(self, spec: ModelSpec, *, retry: RetryPolicy | None = None) -> None:
        super().__init__(spec)
        self.retry = retry or RetryPolicy(max_retries=spec.max_retries)
        self._client = openai.AsyncOpenAI(
            api_key=spec.api_key() or _NO_KEY,
            base_url=spec.base_url,
            max_retries=0,
            timeout=openai.Timeout(spec.timeout_s, connect=min(10.0, spec.timeout_s)),
            http_client=_fast_transport(),
        )
        # The official API wants max_completion_tokens (reasoning models reject max_tokens);
        # most self-hosted servers only know max_tokens.
        self._token_param = (
            "max_completion_tokens"
            if spec.base_url and "api.openai.com" in spec.base_url
            else "max_tokens"
        )

    async def generate(self, request: ChatRequest) -> Completion:
        params: dict[str, Any] = {
            "model": self.spec.model,
            "messages": [dict(m) for m in request.messages],
            self._token_param: request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        if request.stop:
            params["stop"] = list(request.stop)
        if request.seed is not None:
            params["seed"] = request.seed
        if request.logprobs:
            params["logprobs"] = True
            if request.top_logprobs:
                params["top_logprobs"] = request.top_logprobs
        if request.extra:
            params["extra_body"] = dict(request.extra)
        started = time.perf_counter()
        response = await self._call(self._client.chat.completions.create, params)
        latency = time.perf_counter() - started
        if not response.choices:
            raise ModelCallError(f"{self.name} returned no choices")
        choice = response.choices[0]
        usage = response.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        return Completion(
            text=choice.message.content or "",
            finish_reason=choice.finish_reason or "unknown",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=latency,
            model=self.name,
            cost_usd=self.spec.cost(prompt_tokens, completion_tokens) if usage else None,
            logprobs=_chat_logprobs(choice) if request.logprobs else None,
        )

    async def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """Prompt log-likelihoods from the completions endpoint with echo + logprobs.

        vLLM and llama.cpp servers support this; chat-only APIs (OpenAI, DeepSeek) do not,
        and get an UnsupportedCapabilityError rather than a made-up number.
        """
        semaphore = asyncio.Semaphore(self.spec.max_concurrency)

        async def one(req: LoglikelihoodRequest) -> Loglikelihood:
            async with semaphore:
                return await self._loglikelihood_one(req)

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def _loglikelihood_one(self, req: LoglikelihoodRequest) -> Loglikelihood:
        params = {
            "model": self.spec.model,
            "prompt": req.context + req.continuation,
            "max_tokens": 1,
            "temperature": 0.0,
            "echo": True,
            "logprobs": 1,
        }
        try:
            response = await self._call(self._client.completions.create, params)
            lp = response.choices[0].logprobs
            offsets, tokens, values = lp.text_offset, lp.tokens, lp.token_logprobs
            tops = lp.top_logprobs or [None] * len(tokens)
        except (AttributeError, IndexError, TypeError, ModelCallError) as exc:
            raise UnsupportedCapabilityError(
                f"{self.name} did not return prompt logprobs ({exc})",
                hint="use generative scoring, or serve the model with vLLM / llama.cpp"
                " (serve-local --logits-all)",
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

    async def _call(self, method: Any, params: dict[str, Any]) -> Any:
        """One API call with retries; every failure ends as an OpenparityError."""
        for attempt in range(self.retry.max_retries + 1):
            last = attempt == self.retry.max_retries
            try:
                return await method(**params)
            except openai.APIStatusError as exc:
                if exc.status_code not in RETRYABLE_STATUS or last:
                    raise self._status_error(exc) from None
                await asyncio.sleep(self.retry.delay(attempt, exc.response.headers))
            except openai.APIConnectionError as exc:  # includes timeouts
                if last:
                    raise self._connection_error(exc) from None
                await asyncio.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")

    def _status_error(self, exc: openai.APIStatusError) -> OpenparityError:
        where = f"{self.name} at {self.spec.base_url}"
        detail = _error_detail(exc)
        if exc.status_code in (401, 403):
            source = f"${self.spec.api_key_env}" if self.spec.api_key_env else "the API key"
            return MissingAPIKeyError(
                f"{where} rejected the key from {source} (HTTP {exc.status_code})",
                hint="check the key, or set api_key_env / api_key_file in models.yaml",
            )
        if exc.status_code == 404:
            return UnknownModelError(
                f"{where} has no model {self.spec.model!r} (HTTP 404: {detail})",
                hint="check the model name (GET /v1/models lists them) and that base_url ends"
                " in /v1",
            )
        if exc.status_code in RETRYABLE_STATUS:
            return ModelCallError(
                f"{where} kept failing: HTTP {exc.status_code} after"
                f" {self.retry.max_retries} retries ({detail})",
                hint="the server is overloaded or down; retry later or lower the concurrency",
            )
        return ModelCallError(f"{where} refused the request: HTTP {exc.status_code} ({detail})")

    def _connection_error(self, exc: openai.APIConnectionError) -> OpenparityError:
        # The aiohttp transport reports a refused connection as a connect *timeout*: look at
        # the root cause, not the wrapper, to tell "down" from "slow".
        refused = _root_cause(exc)
        if isinstance(exc, openai.APITimeoutError) and not isinstance(refused, ConnectionError):
            return ModelCallError(
                f"{self.name} at {self.spec.base_url} did not answer within"
                f" {self.spec.timeout_s:g}s ({self.retry.max_retries} retries)",
                hint="raise timeout_s in models.yaml or lower the concurrency",
            )
        return BackendUnavailableError(
            f"cannot reach {self.name} at {self.spec.base_url} ({_short(refused)})",
            hint="start the server (e.g. openparity models serve-local) or fix base_url",
        )

    async def aclose(self) -> None:
        await self._client.close()


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a `raise ... from ...` / implicit chain."""
    seen = {id(exc)}
    while (nxt := exc.__cause__ or exc.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        exc = nxt
    return exc


def _fast_transport() -> Any:
    """The SDK's aiohttp transport when installed (about 2x the requests/s of its default
    httpx transport at concurrency 64, see benchmarks/openai_backend_overhead.py), else None."""
    factory = getattr(openai, "DefaultAioHttpClient", None)
    if factory is None:
        return None
    try:
        return factory()
    except (ImportError, RuntimeError):
        return None


def _chat_logprobs(choice: Any) -> tuple[TokenLogprob, ...]:
    content = getattr(choice.logprobs, "content", None) or []
    return tuple(
        TokenLogprob(
            token=item.token,
            logprob=item.logprob,
            top=tuple((alt.token, alt.logprob) for alt in (item.top_logprobs or [])),
        )
        for item in content
    )


def _error_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if message:
            return _short(message)
    return _short(exc.message)


def _short(value: object, limit: int = 160) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
