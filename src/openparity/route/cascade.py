"""HybridRouter: try the open model first, check the answer, fall back to the next tier on a
failed check or on any failure. The gateway server and library users share this one object.

    router = HybridRouter.from_file("gateway.yaml")
    result = await router.generate([{"role": "user", "content": "2 + 2?"}], max_tokens=32)
    result.text, result.answered_by, result.route, result.cost_usd
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from openparity.errors import OpenparityError
from openparity.models import ChatModel, open_model, resolve_model
from openparity.models.errors import (
    BackendUnavailableError,
    MissingAPIKeyError,
    ModelCallError,
    UnknownModelError,
)
from openparity.models.retry import RETRYABLE_STATUS, RetryPolicy
from openparity.models.spec import ModelSpec, with_overrides
from openparity.models.types import ChatRequest, Completion, Message
from openparity.route.checks import Answer, Check, run_checks
from openparity.route.config import GatewayConfig, TierConfig, load_gateway_config
from openparity.route.outcome import AllTiersFailedError, Attempt, RouteResult, StreamBrokenError
from openparity.route.resilience import CircuitBreaker, Slots


@dataclass
class Tier:
    """One upstream of the cascade with its own breaker, slots and retry policy."""

    index: int
    config: TierConfig
    spec: ModelSpec
    model: ChatModel
    breaker: CircuitBreaker
    slots: Slots
    retry: RetryPolicy

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def checks(self) -> list[Check]:
        return self.config.checks

    def redact(self, text: str) -> str:
        """`text` without the upstream's API key (an upstream may echo it in an error)."""
        try:
            secret = self.spec.api_key()
        except OpenparityError:
            return text
        return text.replace(secret, "[redacted]") if secret and len(secret) >= 8 else text


class HybridRouter:
    """The cascade over `config.tiers`, in order."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.tiers = [_open_tier(i, t, config.models_file) for i, t in enumerate(config.tiers)]

    @classmethod
    def from_file(cls, path: Path | str) -> HybridRouter:
        return cls(load_gateway_config(Path(path)))

    # --- library entry points -----------------------------------------------------------

    async def generate(self, messages: Sequence[Message], **params: Any) -> RouteResult:
        """The cascade for one chat; raises AllTiersFailedError when no tier answered."""
        result = await self.route(request_from_params(messages, params))
        if result.completion is None:
            raise AllTiersFailedError(result)
        return result

    async def route(self, request: ChatRequest, result: RouteResult | None = None) -> RouteResult:
        """Run the cascade; never raises for upstream failures (completion None instead)."""
        result = result or RouteResult(request)
        started = time.perf_counter()
        try:
            for tier in self.tiers:
                completion = await self._try_tier(tier, request, result)
                if completion is not None:
                    self._answered(result, tier, completion)
                    return result
            self._failed(result)
            return result
        finally:
            result.latency_s = time.perf_counter() - started

    async def stream(self, request: ChatRequest, result: RouteResult) -> AsyncIterator[str]:
        """Text pieces of the answer. Output is held back until the tier's pre-commit point
        and checked; a failure before it falls back invisibly. Raises AllTiersFailedError
        before anything was sent, StreamBrokenError after."""
        result.stream = True
        started = time.perf_counter()
        try:
            for tier in self.tiers:
                if tier.config.precommit_tokens == "all":
                    completion = await self._try_tier(tier, request, result)
                    if completion is not None:
                        self._answered(result, tier, completion)
                        yield completion.text
                        return
                    continue
                async for piece in self._stream_tier(tier, request, result):
                    yield piece
                if result.completion is not None:
                    return
            self._failed(result)
            raise AllTiersFailedError(result)
        finally:
            result.latency_s = time.perf_counter() - started

    async def warm(self) -> None:
        """Load in-process models now, so the first request does not pay for it."""
        for tier in self.tiers:
            if tier.spec.backend in ("local", "hf"):
                await tier.model.generate(ChatRequest.from_prompt("Hi", max_tokens=1))
                if tier.config.checks_need_logprobs:
                    await tier.model.generate(
                        ChatRequest.from_prompt("Hi", max_tokens=1, logprobs=True)
                    )

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if any(t.breaker.state != "open" for t in self.tiers) else "degraded",
            "tiers": [
                {
                    "tier": t.index,
                    "model": t.name,
                    "breaker": t.breaker.state,
                    "retry_in_s": round(t.breaker.retry_in(), 3),
                    "breaker_trips": t.breaker.trips,
                    "consecutive_failures": t.breaker.consecutive,
                    "in_flight": t.slots.in_flight,
                    "max_concurrency": t.slots.limit,
                }
                for t in self.tiers
            ],
        }

    async def aclose(self) -> None:
        for tier in self.tiers:
            await tier.model.aclose()

    async def __aenter__(self) -> HybridRouter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- one tier, whole answers ----------------------------------------------------------

    async def _try_tier(
        self, tier: Tier, request: ChatRequest, result: RouteResult
    ) -> Completion | None:
        """The tier's answer if it passed its checks (with retries on retryable errors)."""
        if not await self._admit(tier, result):
            return None
        try:
            for retry in range(tier.config.retries + 1):
                attempt = Attempt(tier.index, tier.name)
                result.attempts.append(attempt)
                completion = await self._generate(tier, request, attempt)
                if completion is not None:
                    tier.breaker.record_success()
                    checked = await self._check(tier, request, completion, attempt)
                    return completion if checked else None
                if not await self._wait_to_retry(tier, attempt, retry):
                    return None
            return None
        finally:
            tier.slots.release()

    async def _admit(self, tier: Tier, result: RouteResult) -> bool:
        if not await tier.slots.acquire():
            result.attempts.append(
                Attempt(tier.index, tier.name, "skipped", "saturated",
                        f"{tier.slots.limit} requests already in flight")
            )  # fmt: skip
            return False
        if not tier.breaker.allow():
            tier.slots.release()
            result.attempts.append(
                Attempt(tier.index, tier.name, "skipped", "breaker_open",
                        f"circuit open for {tier.breaker.retry_in():.1f}s more")
            )  # fmt: skip
            return False
        return True

    async def _generate(
        self, tier: Tier, request: ChatRequest, attempt: Attempt
    ) -> Completion | None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(tier.config.timeout_s):
                completion = await tier.model.generate(_for_tier(tier, request))
        except TimeoutError:
            self._error(tier, attempt, "timeout", f"no answer within {tier.config.timeout_s:g}s")
            return None
        except OpenparityError as exc:
            reason, detail = _classify(exc)
            self._error(tier, attempt, reason, detail, retry_after_s=_retry_after(exc))
            return None
        except asyncio.CancelledError:
            attempt.outcome, attempt.reason = "cancelled", "client_left"
            tier.breaker.release_probe()
            raise
        finally:
            attempt.latency_s = time.perf_counter() - started
        _charge(attempt, tier, completion.prompt_tokens, completion.completion_tokens)
        if not completion.text.strip() and completion.finish_reason != "length":
            self._error(tier, attempt, "empty", "the upstream answered 200 with no content")
            return None
        return completion

    async def _check(
        self, tier: Tier, request: ChatRequest, completion: Completion, attempt: Attempt,
        *, partial: bool = False,
    ) -> bool:  # fmt: skip
        """Run the tier's checks (only the prefix-capable ones on a `partial` answer); a failure
        marks the attempt check_failed with its reason."""
        results = await run_checks(tier.checks, Answer(request, completion, tier.model, partial))
        attempt.checks = results
        attempt.cost_usd += sum(r.cost_usd for r in results)
        failed = next((r for r in results if not r.passed), None)
        if failed is None:
            return True
        attempt.outcome, attempt.reason, attempt.detail = (
            "check_failed", f"check:{failed.check}", failed.reason,
        )  # fmt: skip
        return False

    def _error(self, tier: Tier, attempt: Attempt, reason: str, detail: str, *,
               retry_after_s: float | None = None) -> None:  # fmt: skip
        attempt.outcome, attempt.reason, attempt.detail = "error", reason, tier.redact(detail)
        attempt.retry_after_s = retry_after_s
        tier.breaker.record_failure()
        if retry_after_s:
            tier.breaker.hold(retry_after_s)

    async def _wait_to_retry(self, tier: Tier, attempt: Attempt, retry: int) -> bool:
        """Sleep before the next same-tier try; False when this tier should be left now."""
        if retry >= tier.config.retries or attempt.reason not in RETRYABLE_REASONS:
            return False
        hinted = attempt.retry_after_s
        wait = hinted if hinted is not None else tier.retry.backoff(retry)
        if wait > tier.config.max_retry_wait_s:
            return False
        await asyncio.sleep(wait)
        # other failures may have opened the breaker meanwhile
        return tier.breaker.allow(waited_out_hold=hinted is not None)

    # --- one tier, streamed -----------------------------------------------------------------

    async def _stream_tier(
        self, tier: Tier, request: ChatRequest, result: RouteResult
    ) -> AsyncIterator[str]:
        """Stream one tier; on success sets result.completion. Falls through (yielding nothing)
        when the tier fails before its pre-commit point, after its retries."""
        if not await self._admit(tier, result):
            return
        try:
            for retry in range(tier.config.retries + 1):
                attempt = Attempt(tier.index, tier.name)
                result.attempts.append(attempt)
                async for piece in self._stream_attempt(tier, request, result, attempt):
                    yield piece
                if result.tier is not None or attempt.outcome != "error":
                    return  # answered, broke after commit, or failed a check
                if not await self._wait_to_retry(tier, attempt, retry):
                    return
        finally:
            tier.slots.release()

    async def _stream_attempt(
        self, tier: Tier, request: ChatRequest, result: RouteResult, attempt: Attempt
    ) -> AsyncIterator[str]:
        precommit = int(tier.config.precommit_tokens)
        pieces: list[str] = []
        sent = 0  # pieces already sent to the client
        finish, usage = None, None
        started = time.perf_counter()
        chunks = tier.model.stream(_for_tier(tier, request))
        try:
            wait = tier.config.first_token_timeout_s or tier.config.timeout_s
            while finish is None:
                try:
                    chunk = await asyncio.wait_for(anext(chunks), wait)
                except StopAsyncIteration:
                    finish = "stop"
                    break
                except TimeoutError:
                    reason = "first_token_timeout" if not pieces else "timeout"
                    raise _StreamFailed(reason, f"no token within {wait:g}s") from None
                except OpenparityError as exc:
                    raise _StreamFailed(*_classify(exc), _retry_after(exc)) from None
                if chunk.text:
                    pieces.append(chunk.text)
                    wait = tier.config.timeout_s
                finish, usage = chunk.finish_reason, chunk.usage or usage
                if finish is not None:
                    break
                if sent:
                    if chunk.text:
                        yield chunk.text
                        sent = len(pieces)
                elif len(pieces) >= precommit:
                    prefix = _assembled(tier, pieces, "partial", None, 0.0)
                    if not await self._check(tier, request, prefix, attempt, partial=True):
                        break
                    result.tier = tier.index  # committed: this tier answers
                    yield "".join(pieces)
                    sent = len(pieces)
            if not "".join(pieces).strip() and attempt.outcome == "ok" and finish != "length":
                raise _StreamFailed("empty", "the upstream streamed no content")
            attempt.latency_s = time.perf_counter() - started
            completion = _assembled(tier, pieces, finish or "stop", usage, attempt.latency_s)
            _charge(attempt, tier, completion.prompt_tokens, completion.completion_tokens)
            tier.breaker.record_success()
            if attempt.outcome == "check_failed":  # failed on a prefix: the next tier answers
                return
            if not sent:
                if not await self._check(tier, request, completion, attempt):
                    return
                result.tier = tier.index
                yield completion.text
            else:  # committed early: checks on the whole answer can only be recorded now
                if pieces[sent:]:
                    yield "".join(pieces[sent:])
                await self._check(tier, request, completion, attempt)
                if attempt.outcome == "check_failed":
                    attempt.outcome, attempt.reason = "ok", "post_commit_" + attempt.reason
            self._answered(result, tier, completion)
        except _StreamFailed as failure:
            attempt.latency_s = time.perf_counter() - started
            _charge(attempt, tier, usage[0] if usage else 0, usage[1] if usage else len(pieces))
            self._error(
                tier, attempt, failure.reason, failure.detail, retry_after_s=failure.retry_after_s
            )
            if sent:
                result.error = failure.detail
                raise StreamBrokenError(result, f"{failure.reason}: {failure.detail}") from None
        except (asyncio.CancelledError, GeneratorExit):
            attempt.outcome, attempt.reason = "cancelled", "client_left"
            tier.breaker.release_probe()
            raise
        finally:
            await chunks.aclose()

    # --- bookkeeping ----------------------------------------------------------------------

    def _answered(self, result: RouteResult, tier: Tier, completion: Completion) -> None:
        result.completion, result.tier = completion, tier.index
        closed = self.tiers[-1].spec
        result.closed_cost_usd = closed.cost(completion.prompt_tokens, completion.completion_tokens)

    def _failed(self, result: RouteResult) -> None:
        result.error = "every tier failed: " + (result.reasons() or "no tier available")


class _StreamFailed(Exception):
    def __init__(self, reason: str, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.retry_after_s = reason, detail, retry_after_s


def _retry_after(exc: OpenparityError) -> float | None:
    return exc.retry_after_s if isinstance(exc, ModelCallError) else None


RETRYABLE_REASONS = frozenset(
    {"http_429", "http_5xx", "timeout", "connect", "malformed", "stream_cut", "upstream_error",
     "empty"}
)  # fmt: skip


def _classify(exc: OpenparityError) -> tuple[str, str]:
    """(reason code, detail) for an upstream failure."""
    detail = exc.one_line()[:300]
    if isinstance(exc, ModelCallError):
        if exc.status is not None and exc.status not in RETRYABLE_STATUS and exc.status != 429:
            return f"http_{exc.status // 100}xx_final", detail
        return exc.reason, detail
    if isinstance(exc, BackendUnavailableError):
        return "connect", detail
    if isinstance(exc, MissingAPIKeyError):
        return "auth", detail
    if isinstance(exc, UnknownModelError):
        return "not_found", detail
    return "upstream_error", detail


def _open_tier(index: int, config: TierConfig, models_file: Path | None) -> Tier:
    # The router does the retries itself, so that each one is counted and the breaker sees it.
    spec = with_overrides(
        resolve_model(config.model, models_file=models_file),
        max_retries=0,
        timeout_s=config.timeout_s,
        max_concurrency=config.max_concurrency,
    )
    return Tier(
        index=index,
        config=config,
        spec=spec,
        model=open_model(spec),
        breaker=CircuitBreaker(config.breaker_failures, config.breaker_cooldown_s),
        slots=Slots(config.max_concurrency, config.queue_timeout_s),
        retry=RetryPolicy(
            max_retries=config.retries, initial_delay_s=0.05, max_delay_s=config.max_retry_wait_s
        ),
    )


def _for_tier(tier: Tier, request: ChatRequest) -> ChatRequest:
    if tier.config.checks_need_logprobs and not request.logprobs:
        return replace(request, logprobs=True)
    return request


def _charge(attempt: Attempt, tier: Tier, prompt_tokens: int, completion_tokens: int) -> None:
    attempt.prompt_tokens, attempt.completion_tokens = prompt_tokens, completion_tokens
    attempt.cost_usd += tier.spec.cost(prompt_tokens, completion_tokens) or 0.0


def _assembled(
    tier: Tier, pieces: list[str], finish: str, usage: tuple[int, int] | None, latency: float
) -> Completion:
    prompt_tokens, completion_tokens = usage or (0, len(pieces))
    return Completion(
        text="".join(pieces),
        finish_reason=finish,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_s=latency,
        model=tier.name,
        cost_usd=tier.spec.cost(prompt_tokens, completion_tokens),
    )


_PARAMS = ("max_tokens", "temperature", "top_p", "stop", "seed", "logprobs", "top_logprobs")


def request_from_params(messages: Sequence[Message], params: dict[str, Any]) -> ChatRequest:
    """A ChatRequest from OpenAI-style keyword parameters (unknown ones travel in `extra`)."""
    known: dict[str, Any] = {}
    extra = dict(params)
    if "max_completion_tokens" in extra:
        extra.setdefault("max_tokens", extra.pop("max_completion_tokens"))
    for name in _PARAMS:
        if extra.get(name) is not None:
            known[name] = extra.pop(name)
        else:
            extra.pop(name, None)
    if isinstance(known.get("stop"), str):
        known["stop"] = [known["stop"]]
    for name in ("model", "stream", "stream_options", "n", "user"):
        extra.pop(name, None)
    return ChatRequest(messages=list(messages), extra=extra, **known)
