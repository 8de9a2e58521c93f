"""HybridRouter: try the open model first, check the answer, fall back to the next tier on a
failed check or on any failure. The gateway server and library users share this one object.

    router = HybridRouter.from_file("gateway.yaml")
    result = await router.generate([{"role": "user", "content": "2 + 2?"}], max_tokens=32)
    result.text, result.answered_by, result.route, result.cost_usd
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from openparity.errors import OpenparityError
from openparity.models import ChatModel, open_model, resolve_model
from openparity.models.chat_body import (
    assemble_chunks,
    choices_of,
    chunks_of,
    completion_from_body,
    first_choice_text,
    tool_call_deltas,
)
from openparity.models.errors import (
    BackendUnavailableError,
    MissingAPIKeyError,
    ModelCallError,
    UnknownModelError,
)
from openparity.models.retry import RETRYABLE_STATUS, RetryPolicy
from openparity.models.spec import ModelSpec, with_overrides
from openparity.models.types import ChatRequest, Completion, Message, StreamChunk
from openparity.redact import redact_url
from openparity.route.checks import Answer, Check, CheckResult, run_checks
from openparity.route.config import GatewayConfig, TierConfig, load_gateway_config
from openparity.route.outcome import (
    AllTiersFailedError,
    Attempt,
    Rejection,
    RouteResult,
    StreamBrokenError,
)
from openparity.route.params import ClientRequestError, request_from_params
from openparity.route.resilience import CircuitBreaker, Slots

T = TypeVar("T")


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
    unavailable: str | None = None  # why this tier cannot be used at all (e.g. no API key)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def checks(self) -> list[Check]:
        return self.config.checks

    @property
    def context_tokens(self) -> int | None:
        """The model's context in tokens, when known (configured, or an in-process model's)."""
        if self.config.context_tokens is not None:
            return self.config.context_tokens
        return self.spec.n_ctx if self.spec.backend in ("local", "hf") else None

    def max_call_cost(self, request: ChatRequest, result: RouteResult) -> float | None:
        """The most one call to this tier can cost for `request` (0 for an unpriced tier);
        None when its output has no known bound (no max_tokens, default or context)."""
        if self.spec.price is None:
            return 0.0
        output = 0 if result.endpoint == "/embeddings" else self.max_output_tokens(request)
        if output is None:
            return None
        choices = int(request.extra.get("n") or 1)
        return self.spec.price.cost(result.prompt_tokens_bound, output * choices)

    def max_output_tokens(self, request: ChatRequest) -> int | None:
        """The most tokens this tier's answer to `request` can have, when known."""
        asked = request.max_tokens or self.config.defaults.max_tokens
        context = self.context_tokens
        if asked is None:
            return context
        return asked if context is None else min(asked, context)

    def cannot_serve(self, request: ChatRequest) -> str | None:
        """What in `request` this tier's backend cannot honour (tools, n > 1, images); None
        when it can serve it. OpenAI-compatible upstreams get every field as sent."""
        if self.spec.backend == "openai":
            return None
        if request.extra.get("tools") or request.extra.get("functions"):
            return "tools"
        if int(request.extra.get("n") or 1) > 1:
            return "n > 1"
        for message in request.messages:
            content = message.get("content")
            if isinstance(content, list) and any(
                isinstance(p, dict) and p.get("type") not in (None, "text") for p in content
            ):
                return "image or audio content"
        return None

    def redact(self, text: str) -> str:
        """`text` without the upstream's API key or URL password (an upstream may echo them
        in an error)."""
        try:
            secrets = [self.spec.api_key(), urlsplit(self.spec.base_url or "").password]
        except OpenparityError:
            secrets = [urlsplit(self.spec.base_url or "").password]
        for secret in secrets:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "[redacted]")
        return redact_url(text)


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
            for tier in self._tiers_for(result):
                completion = await self._try_tier(tier, request, result)
                if completion is not None:
                    self._answered(result, tier, completion)
                    return result
                if result.rejection is not None:
                    break
            self._failed(result)
            return result
        finally:
            result.latency_s = time.perf_counter() - started

    async def stream(self, request: ChatRequest, result: RouteResult) -> AsyncIterator[StreamChunk]:
        """The answer's chunks (an OpenAI-compatible tier's own events, text otherwise). Output
        is held back until the tier's pre-commit point and checked; a failure before it falls
        back invisibly. Requests with tools or n > 1 are checked whole before anything is sent.
        Raises AllTiersFailedError before anything was sent, StreamBrokenError after."""
        result.stream = True
        started = time.perf_counter()
        try:
            for tier in self._tiers_for(result):
                if tier.config.precommit_tokens == "all":
                    completion = await self._try_tier(tier, request, result)
                    if completion is not None:
                        self._answered(result, tier, completion)
                        for chunk in _whole_answer_chunks(completion):
                            yield chunk
                        return
                    if result.rejection is not None:
                        break
                    continue
                async for piece in self._stream_tier(tier, request, result):
                    yield piece
                if result.completion is not None:
                    return
                if result.rejection is not None:
                    break
            self._failed(result)
            raise AllTiersFailedError(result)
        finally:
            result.latency_s = time.perf_counter() - started

    async def forward(
        self, endpoint: str, body: dict[str, Any], result: RouteResult
    ) -> dict[str, Any] | None:
        """Another endpoint of the API (/embeddings, /completions) through the first tier that
        serves it: no quality checks, the next tier on any failure, every attempt costed.
        None when no tier answered (the attempts say why)."""
        started = time.perf_counter()
        try:
            for tier in self._tiers_for(result):
                if tier.spec.backend != "openai":
                    result.attempts.append(
                        Attempt(
                            tier.index,
                            tier.name,
                            "skipped",
                            "unsupported",
                            f"{tier.spec.backend} models do not serve {endpoint}",
                        )
                    )
                    continue
                answer = await self._forward_tier(tier, endpoint, body, result)
                if answer is not None:
                    self._answered(result, tier, answer)
                    return dict(answer.raw or {})
                if result.rejection is not None:
                    break
            self._failed(result)
            return None
        finally:
            result.latency_s = time.perf_counter() - started

    def tier_named(self, name: str) -> int | None:
        """The index of the tier whose model spec is `name`, if any."""
        return next((t.index for t in self.tiers if t.name == name), None)

    def check_fits(self, request: ChatRequest, pinned: int | None = None) -> None:
        """Raise ClientRequestError when the request asks for more output tokens than any
        tier that could answer it holds (only when every such tier's context is known)."""
        asked = request.max_tokens
        tiers = self.tiers if pinned is None else [self.tiers[pinned]]
        contexts = [t.context_tokens for t in tiers]
        if asked is None or None in contexts:
            return
        largest = max(c for c in contexts if c is not None)
        if asked > largest:
            raise ClientRequestError(
                f"`max_tokens` {asked} is more than the largest context here ({largest} tokens)",
                param="max_tokens",
                code="context_length_exceeded",
            )

    def _tiers_for(self, result: RouteResult) -> list[Tier]:
        pinned = result.pinned_tier
        return self.tiers if pinned is None else [self.tiers[pinned]]

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
        usable = [t for t in self.tiers if t.unavailable is None]
        return {
            "status": "ok" if any(t.breaker.state != "open" for t in usable) else "degraded",
            "tiers": [
                {
                    "tier": t.index,
                    "model": t.name,
                    "unavailable": t.unavailable,
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

        async def answer(attempt: Attempt) -> Completion | None:
            return await self._generate(tier, request, attempt)

        async def passes(completion: Completion, attempt: Attempt) -> bool:
            return await self._check(tier, request, completion, attempt)

        return await self._with_retries(tier, result, answer, passes)

    async def _forward_tier(
        self, tier: Tier, endpoint: str, body: dict[str, Any], result: RouteResult
    ) -> Completion | None:
        """The tier's answer to a forwarded request (the body in `raw`, the tokens counted)."""

        async def answer(attempt: Attempt) -> Completion | None:
            post = tier.model.post  # type: ignore[attr-defined]
            posted = await self._timed(tier, attempt, lambda: post(endpoint, body))
            return None if posted is None else _forwarded(tier, attempt, posted)

        return await self._with_retries(tier, result, answer)

    async def _with_retries(
        self,
        tier: Tier,
        result: RouteResult,
        answer: Callable[[Attempt], Awaitable[Completion | None]],
        passes: Callable[[Completion, Attempt], Awaitable[bool]] | None = None,
    ) -> Completion | None:
        """One tier's attempts: admit, call `answer` until it gives a completion or retrying is
        pointless, then let `passes` (the checks) accept it; the tier's slot is held throughout."""
        if not await self._admit(tier, result):
            return None
        try:
            for retry in range(tier.config.retries + 1):
                attempt = Attempt(tier.index, tier.name)
                result.attempts.append(attempt)
                if not await self._hold_budget(tier, result, attempt):
                    return None
                try:
                    completion = await answer(attempt)
                    if attempt.rejection is not None:  # the client's error: no other tier tries
                        result.rejection = attempt.rejection
                        return None
                    if completion is not None:
                        tier.breaker.record_success()
                        accepted = passes is None or await passes(completion, attempt)
                        return completion if accepted else None
                finally:
                    _settle(result, attempt)
                if not await self._wait_to_retry(tier, attempt, retry):
                    return None
            return None
        finally:
            tier.slots.release()

    async def _hold_budget(self, tier: Tier, result: RouteResult, attempt: Attempt) -> bool:
        """Hold the call's maximum cost on the request's budget; False (the request refused,
        the attempt skipped) when the budget cannot cover it."""
        spending = result.spending
        if spending is None:
            return True
        maximum = tier.max_call_cost(result.request, result)
        if maximum is None:
            message = (
                f"{tier.name}'s answers have no known length and the key has a budget:"
                " send max_tokens (or set the tier's defaults.max_tokens or"
                " context_tokens)"
            )
            error = {
                "message": message,
                "type": "invalid_request_error",
                "param": "max_tokens",
                "code": "max_tokens_required",
            }
            result.rejection = Rejection(400, message, error)
        else:
            lifetime = 300.0 + 2 * tier.config.timeout_s  # a killed replica's holds expire
            verdict = await spending.hold(maximum, _member(result, attempt), lifetime)
            if verdict.granted:
                attempt.held_usd = maximum
                return True
            result.rejection = spending.refusal(maximum, verdict)
        attempt.outcome, attempt.reason = "skipped", "budget"
        attempt.detail = result.rejection.message
        return False

    async def _admit(self, tier: Tier, result: RouteResult) -> bool:
        if tier.unavailable is not None:
            result.attempts.append(
                Attempt(tier.index, tier.name, "skipped", "unavailable", tier.unavailable)
            )
            return False
        missing = tier.cannot_serve(result.request)
        if missing:
            result.attempts.append(
                Attempt(
                    tier.index,
                    tier.name,
                    "skipped",
                    "unsupported",
                    f"{tier.spec.backend} models cannot answer requests with {missing}",
                )
            )
            return False
        if not await tier.slots.acquire():
            result.attempts.append(
                Attempt(
                    tier.index,
                    tier.name,
                    "skipped",
                    "saturated",
                    f"{tier.slots.limit} requests already in flight",
                )
            )
            return False
        if not tier.breaker.allow():
            tier.slots.release()
            result.attempts.append(
                Attempt(
                    tier.index,
                    tier.name,
                    "skipped",
                    "breaker_open",
                    f"circuit open for {tier.breaker.retry_in():.1f}s more",
                )
            )
            return False
        if not await tier.breaker.claim_probe():
            tier.slots.release()
            result.attempts.append(
                Attempt(
                    tier.index,
                    tier.name,
                    "skipped",
                    "breaker_open",
                    "circuit half-open: another replica is probing the upstream",
                )
            )
            return False
        return True

    async def _generate(
        self, tier: Tier, request: ChatRequest, attempt: Attempt
    ) -> Completion | None:
        completion = await self._timed(
            tier, attempt, lambda: tier.model.generate(_for_tier(tier, request))
        )
        if completion is None:
            return None
        _charge(attempt, tier, completion.prompt_tokens, completion.completion_tokens)
        if _is_empty(completion.text, completion.tool_calls, completion.finish_reason):
            self._error(tier, attempt, "empty", "the upstream answered 200 with no content")
            return None
        return completion

    async def _timed(
        self, tier: Tier, attempt: Attempt, call: Callable[[], Awaitable[T]]
    ) -> T | None:
        """`call()` under the tier's timeout, timed on the attempt; a failure is recorded on the
        attempt (and the breaker) and gives None."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(tier.config.timeout_s):
                return await call()
        except TimeoutError:
            self._error(tier, attempt, "timeout", f"no answer within {tier.config.timeout_s:g}s")
            return None
        except OpenparityError as exc:
            reason, detail = _classify(exc)
            self._error(tier, attempt, reason, detail, retry_after_s=_retry_after(exc))
            attempt.rejection = _rejection(tier, reason, exc)
            return None
        except asyncio.CancelledError:
            attempt.outcome, attempt.reason = "cancelled", "client_left"
            tier.breaker.release_probe()
            raise
        finally:
            attempt.latency_s = time.perf_counter() - started

    async def _check(
        self,
        tier: Tier,
        request: ChatRequest,
        completion: Completion,
        attempt: Attempt,
        *,
        partial: bool = False,
    ) -> bool:
        """Run the tier's checks (only the prefix-capable ones on a `partial` answer); a failure
        marks the attempt check_failed with its reason."""
        results: list[CheckResult] = []
        for choice in choices_of(completion):
            results += await run_checks(tier.checks, Answer(request, choice, tier.model, partial))
            if not results[-1:] or results[-1].passed:
                continue
            break
        attempt.checks = results
        attempt.cost_usd += sum(r.cost_usd for r in results)
        failed = next((r for r in results if not r.passed), None)
        if failed is None:
            return True
        attempt.outcome, attempt.reason, attempt.detail = (
            "check_failed",
            f"check:{failed.check}",
            failed.reason,
        )
        return False

    def _error(
        self,
        tier: Tier,
        attempt: Attempt,
        reason: str,
        detail: str,
        *,
        retry_after_s: float | None = None,
    ) -> None:
        attempt.outcome, attempt.reason, attempt.detail = "error", reason, tier.redact(detail)
        attempt.retry_after_s = retry_after_s
        if reason in NOT_THE_UPSTREAMS_FAULT:  # it answered: the request was at fault
            tier.breaker.release_probe()
            return
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
    ) -> AsyncIterator[StreamChunk]:
        """Stream one tier; on success sets result.completion. Falls through (yielding nothing)
        when the tier fails before its pre-commit point, after its retries."""
        if not await self._admit(tier, result):
            return
        try:
            for retry in range(tier.config.retries + 1):
                attempt = Attempt(tier.index, tier.name)
                result.attempts.append(attempt)
                if not await self._hold_budget(tier, result, attempt):
                    return
                try:
                    async for piece in self._stream_attempt(tier, request, result, attempt):
                        yield piece
                finally:
                    _settle(result, attempt)
                if result.tier is not None or attempt.outcome != "error" or result.rejection:
                    return  # answered, broke after commit, failed a check, or refused
                if not await self._wait_to_retry(tier, attempt, retry):
                    return
        finally:
            tier.slots.release()

    async def _stream_attempt(
        self, tier: Tier, request: ChatRequest, result: RouteResult, attempt: Attempt
    ) -> AsyncIterator[StreamChunk]:
        precommit = None if _checked_whole(request) else int(tier.config.precommit_tokens)
        received: list[StreamChunk] = []  # the answer's chunks so far (text or events)
        outputs = 0  # chunks with text or tool-call output
        sent = 0  # chunks already sent to the client
        holding = False  # a tool call began: nothing more is sent until it is whole and checked
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
                    reason = "first_token_timeout" if not outputs else "timeout"
                    raise _StreamFailed(reason, f"no token within {wait:g}s") from None
                except OpenparityError as exc:
                    reason, detail = _classify(exc)
                    attempt.rejection = _rejection(tier, reason, exc)
                    raise _StreamFailed(reason, detail, _retry_after(exc)) from None
                finish, usage = chunk.finish_reason, chunk.usage or usage
                if chunk.text or chunk.event is not None:
                    received.append(chunk)
                calls_tools = bool(tool_call_deltas(chunk.event))
                if chunk.text or calls_tools:
                    outputs += 1
                    wait = tier.config.timeout_s
                holding = holding or calls_tools
                if finish is not None:
                    break
                if holding:
                    continue
                if sent:
                    yield chunk
                    sent = len(received)
                elif precommit is not None and outputs >= precommit:
                    prefix = _assembled(tier, received, "partial", None, 0.0)
                    if not await self._check(tier, request, prefix, attempt, partial=True):
                        break
                    result.tier = tier.index  # committed: this tier answers
                    for ready in received:
                        yield ready
                    sent = len(received)
            attempt.latency_s = time.perf_counter() - started
            completion = _assembled(tier, received, finish or "stop", usage, attempt.latency_s)
            empty = _is_empty(completion.text, completion.tool_calls, completion.finish_reason)
            if empty and attempt.outcome == "ok":
                raise _StreamFailed("empty", "the upstream streamed no content")
            _charge(attempt, tier, completion.prompt_tokens, completion.completion_tokens)
            tier.breaker.record_success()
            if attempt.outcome == "check_failed":  # failed on a prefix: the next tier answers
                return
            if not sent:
                if not await self._check(tier, request, completion, attempt):
                    return
                result.tier = tier.index
                for ready in received:
                    yield ready
            elif holding:  # committed text, then a tool call: sent only if the answer passes
                if not await self._check(tier, request, completion, attempt):
                    result.error = f"{attempt.reason}: {attempt.detail}"
                    raise StreamBrokenError(
                        result, f"a tool call was held back: it failed {result.error}"
                    )
                for ready in received[sent:]:
                    yield ready
            else:  # committed early: checks on the whole answer can only be recorded now
                for ready in received[sent:]:
                    yield ready
                await self._check(tier, request, completion, attempt)
                if attempt.outcome == "check_failed":
                    attempt.outcome, attempt.reason = "ok", "post_commit_" + attempt.reason
            self._answered(result, tier, completion)
        except _StreamFailed as failure:
            attempt.latency_s = time.perf_counter() - started
            _charge(attempt, tier, usage[0] if usage else 0, usage[1] if usage else outputs)
            self._error(
                tier, attempt, failure.reason, failure.detail, retry_after_s=failure.retry_after_s
            )
            result.rejection = attempt.rejection
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
        if result.rejection is None:
            result.rejection = _too_long_for_every_tier(result)
        if result.rejection is not None:
            result.error = "rejected: " + result.rejection.message
            return
        result.error = "every tier failed: " + (result.reasons() or "no tier available")


class _StreamFailed(Exception):
    def __init__(self, reason: str, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.retry_after_s = reason, detail, retry_after_s


def _member(result: RouteResult, attempt: Attempt) -> str:
    """The name of one call's hold: unique across requests and replicas."""
    return f"{result.request_id}:{result.attempts.index(attempt)}"


def _settle(result: RouteResult, attempt: Attempt) -> None:
    """Release a call's hold and charge what it really cost."""
    if result.spending is not None and attempt.held_usd is not None:
        result.spending.settle(_member(result, attempt), attempt.held_usd, attempt.cost_usd)
        attempt.held_usd = None


def _retry_after(exc: OpenparityError) -> float | None:
    return exc.retry_after_s if isinstance(exc, ModelCallError) else None


RETRYABLE_REASONS = frozenset(
    {
        "http_429",
        "http_5xx",
        "timeout",
        "connect",
        "malformed",
        "stream_cut",
        "upstream_error",
        "empty",
    }
)


# The upstream answered, and said the request cannot be served: no breaker counts it.
# client_error: malformed (400 / 413 / 422), the client's to fix; no other tier is tried.
# context: too long for this model; a tier with a larger context may still serve it.
NOT_THE_UPSTREAMS_FAULT = frozenset({"client_error", "context"})
CLIENT_ERROR_STATUS = frozenset({400, 413, 422})
_CONTEXT_WORDS = (
    "context length",
    "context_length",
    "context window",
    "maximum context",
    "too many tokens",
    "prompt is too long",
)


def _classify(exc: OpenparityError) -> tuple[str, str]:
    """(reason code, detail) for an upstream failure."""
    detail = exc.one_line()[:300]
    if isinstance(exc, ModelCallError):
        if exc.status in CLIENT_ERROR_STATUS:
            said = str(exc.upstream_error or detail).lower()
            return ("context" if any(w in said for w in _CONTEXT_WORDS) else "client_error"), detail
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


def _rejection(tier: Tier, reason: str, exc: OpenparityError) -> Rejection | None:
    """The upstream's refusal of a malformed request, to pass on to the client as it said it
    (its status and its error object, with the upstream's key redacted)."""
    if reason != "client_error" or not isinstance(exc, ModelCallError) or exc.status is None:
        return None
    said = dict(exc.upstream_error or {})
    message = tier.redact(str(said.get("message") or exc.message))[:2000]
    error = {
        "message": message,
        "type": str(said.get("type") or "invalid_request_error"),
        "param": said.get("param") if isinstance(said.get("param"), str) else None,
        "code": said.get("code") if isinstance(said.get("code"), str) else None,
    }
    return Rejection(exc.status, message, error)


def _too_long_for_every_tier(result: RouteResult) -> Rejection | None:
    """A 400 when every tier that was asked said the request does not fit its context."""
    tried = [a for a in result.attempts if a.outcome == "error"]
    if not tried or any(a.reason != "context" for a in tried):
        return None
    message = "the request does not fit the context of any model here: " + tried[-1].detail
    error = {
        "message": message,
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    return Rejection(400, message, error)


def _open_tier(index: int, config: TierConfig, models_file: Path | None) -> Tier:
    # The router does the retries itself, so that each one is counted and the breaker sees it.
    spec = with_overrides(
        resolve_model(config.model, models_file=models_file),
        max_retries=0,
        timeout_s=config.timeout_s,
        max_concurrency=config.max_concurrency,
    )
    unavailable = None
    try:
        model = open_model(spec)
    except MissingAPIKeyError as exc:  # serve the other tiers; this one says why it cannot
        unavailable, model = exc.one_line(), _Unavailable(spec, exc)
    return Tier(
        index=index,
        config=config,
        spec=spec,
        unavailable=unavailable,
        model=model,
        breaker=CircuitBreaker(config.breaker_failures, config.breaker_cooldown_s),
        slots=Slots(config.max_concurrency, config.queue_timeout_s),
        retry=RetryPolicy(
            max_retries=config.retries, initial_delay_s=0.05, max_delay_s=config.max_retry_wait_s
        ),
    )


class _Unavailable(ChatModel):
    """A tier's model that cannot be opened (its API key is missing): never called, the
    router skips the tier as `unavailable`."""

    def __init__(self, spec: ModelSpec, error: OpenparityError) -> None:
        super().__init__(spec)
        self.error = error

    async def generate(self, request: ChatRequest) -> Completion:
        raise self.error


def _for_tier(tier: Tier, request: ChatRequest) -> ChatRequest:
    """The request as this tier gets it: its configured defaults where the client set
    nothing, and logprobs when a check needs them."""
    changes: dict[str, Any] = {
        name: value
        for name, value in tier.config.defaults.model_dump().items()
        if value is not None and getattr(request, name) is None
    }
    if tier.config.checks_need_logprobs and not request.logprobs:
        changes["logprobs"] = True
    return replace(request, **changes) if changes else request


def _charge(attempt: Attempt, tier: Tier, prompt_tokens: int, completion_tokens: int) -> None:
    attempt.prompt_tokens, attempt.completion_tokens = prompt_tokens, completion_tokens
    attempt.cost_usd += tier.spec.cost(prompt_tokens, completion_tokens) or 0.0


def _assembled(
    tier: Tier,
    received: list[StreamChunk],
    finish: str,
    usage: tuple[int, int] | None,
    latency: float,
) -> Completion:
    """The streamed answer so far as a Completion: from the upstream's own events when it sent
    them (tool calls, n choices and every other field kept), from the text otherwise."""
    events = [c.event for c in received if c.event is not None]
    texts = [c.text for c in received if c.text]
    if events and finish != "partial":
        with contextlib.suppress(KeyError, IndexError, TypeError, AttributeError, ValueError):
            return completion_from_body(
                assemble_chunks(events),
                model=tier.name,
                latency_s=latency,
                cost=tier.spec.cost,
                want_logprobs=False,
                usage_fallback=usage or (0, len(texts)),
            )
    prompt_tokens, completion_tokens = usage or (0, len(texts))
    return Completion(
        text="".join(texts),
        finish_reason=finish,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_s=latency,
        model=tier.name,
        cost_usd=tier.spec.cost(prompt_tokens, completion_tokens),
    )


def _forwarded(tier: Tier, attempt: Attempt, answer: dict[str, Any]) -> Completion:
    """A forwarded endpoint's answer, costed from its usage, as the Completion the ledger keeps."""
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    completion_tokens = int(usage.get("completion_tokens") or 0)
    _charge(attempt, tier, prompt_tokens, completion_tokens)
    return Completion(
        text="",
        finish_reason="stop",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_s=attempt.latency_s,
        model=tier.name,
        cost_usd=attempt.cost_usd,
        raw=answer,
    )


def _whole_answer_chunks(completion: Completion) -> list[StreamChunk]:
    """A whole answer as stream chunks: the upstream's body as events when there is one."""
    if completion.raw is None:
        return [StreamChunk(completion.text)]
    return [StreamChunk(first_choice_text(e), event=e) for e in chunks_of(completion.raw)]


def _is_empty(text: str, tool_calls: Sequence[Any], finish_reason: str) -> bool:
    return not text.strip() and not tool_calls and finish_reason != "length"


def _checked_whole(request: ChatRequest) -> bool:
    """Tool calls and several choices are only checked whole, so nothing streams early."""
    return bool(request.extra.get("tools") or request.extra.get("functions")) or (
        int(request.extra.get("n") or 1) > 1
    )
