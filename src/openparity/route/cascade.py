"""HybridRouter: try the open model first, check the answer, fall back to the next tier on a
failed check or on any failure. The gateway server and library users share this one object.

    router = HybridRouter.from_file("gateway.yaml")
    result = await router.generate([{"role": "user", "content": "2 + 2?"}], max_tokens=32)
    result.text, result.answered_by, result.route, result.cost_usd
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from openparity.errors import OpenparityError
from openparity.models.chat_body import (
    choices_of,
    tool_call_deltas,
)
from openparity.models.types import ChatRequest, Completion, Message, StreamChunk
from openparity.route.answers import (
    assembled,
    checked_whole,
    forwarded,
    is_empty,
    whole_answer_chunks,
)
from openparity.route.checks import Answer, CheckResult, run_checks
from openparity.route.config import GatewayConfig, load_gateway_config
from openparity.route.failures import (
    NOT_THE_UPSTREAMS_FAULT,
    RETRYABLE_REASONS,
    StreamFailed,
    classify,
    rejection,
    retry_after,
    too_long_for_every_tier,
)
from openparity.route.outcome import (
    AllTiersFailedError,
    Attempt,
    Rejection,
    RouteResult,
    StreamBrokenError,
)
from openparity.route.params import ClientRequestError, request_from_params
from openparity.route.tier import Tier, charge, for_tier, open_tier

T = TypeVar("T")


class HybridRouter:
    """The cascade over `config.tiers`, in order."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.tiers = [open_tier(i, t, config.models_file) for i, t in enumerate(config.tiers)]

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
                        for chunk in whole_answer_chunks(completion):
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
            return None if posted is None else forwarded(tier, attempt, posted)

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
            tier, attempt, lambda: tier.model.generate(for_tier(tier, request))
        )
        if completion is None:
            return None
        charge(attempt, tier, completion.prompt_tokens, completion.completion_tokens)
        if is_empty(completion.text, completion.tool_calls, completion.finish_reason):
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
            reason, detail = classify(exc)
            self._error(tier, attempt, reason, detail, retry_after_s=retry_after(exc))
            attempt.rejection = rejection(tier, reason, exc)
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
        precommit = None if checked_whole(request) else int(tier.config.precommit_tokens)
        received: list[StreamChunk] = []  # the answer's chunks so far (text or events)
        outputs = 0  # chunks with text or tool-call output
        sent = 0  # chunks already sent to the client
        holding = False  # a tool call began: nothing more is sent until it is whole and checked
        finish, usage = None, None
        started = time.perf_counter()
        chunks = tier.model.stream(for_tier(tier, request))
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
                    raise StreamFailed(reason, f"no token within {wait:g}s") from None
                except OpenparityError as exc:
                    reason, detail = classify(exc)
                    attempt.rejection = rejection(tier, reason, exc)
                    raise StreamFailed(reason, detail, retry_after(exc)) from None
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
                    prefix = assembled(tier, received, "partial", None, 0.0)
                    if not await self._check(tier, request, prefix, attempt, partial=True):
                        break
                    result.tier = tier.index  # committed: this tier answers
                    for ready in received:
                        yield ready
                    sent = len(received)
            attempt.latency_s = time.perf_counter() - started
            completion = assembled(tier, received, finish or "stop", usage, attempt.latency_s)
            empty = is_empty(completion.text, completion.tool_calls, completion.finish_reason)
            if empty and attempt.outcome == "ok":
                raise StreamFailed("empty", "the upstream streamed no content")
            charge(attempt, tier, completion.prompt_tokens, completion.completion_tokens)
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
        except StreamFailed as failure:
            attempt.latency_s = time.perf_counter() - started
            charge(attempt, tier, usage[0] if usage else 0, usage[1] if usage else outputs)
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
            result.rejection = too_long_for_every_tier(result)
        if result.rejection is not None:
            result.error = "rejected: " + result.rejection.message
            return
        result.error = "every tier failed: " + (result.reasons() or "no tier available")


def _member(result: RouteResult, attempt: Attempt) -> str:
    """The name of one call's hold: unique across requests and replicas."""
    return f"{result.request_id}:{result.attempts.index(attempt)}"


def _settle(result: RouteResult, attempt: Attempt) -> None:
    """Release a call's hold and charge what it really cost."""
    if result.spending is not None and attempt.held_usd is not None:
        result.spending.settle(_member(result, attempt), attempt.held_usd, attempt.cost_usd)
        attempt.held_usd = None
