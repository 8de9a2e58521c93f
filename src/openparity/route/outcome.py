"""What happened to one gateway request: every attempt (model, tokens, cost, latency, outcome,
reason, check results) and which model answered. The ledger stores exactly this."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from openparity.errors import OpenparityError
from openparity.models.types import ChatRequest, Completion
from openparity.route.checks import CheckResult

AttemptOutcome = Literal["ok", "check_failed", "error", "skipped", "cancelled"]


@dataclass(frozen=True)
class Rejection:
    """A request refused as the client's error (HTTP `status`), with the OpenAI-style error
    object the client gets."""

    status: int
    message: str
    error: dict[str, Any]
    retry_after_s: float | None = None


@dataclass(frozen=True)
class HoldVerdict:
    """Whether a budget could hold a call's maximum cost, and what the key had spent and
    held when it was asked."""

    granted: bool
    spent_usd: float = 0.0
    held_usd: float = 0.0


class Spending(Protocol):
    """A request's budget, as the router asks it call by call (route/accounts.py)."""

    async def hold(self, usd: float, member: str, seconds: float) -> HoldVerdict: ...

    def settle(self, member: str, held: float, cost: float) -> None: ...

    def refusal(self, usd: float, verdict: HoldVerdict) -> Rejection: ...


@dataclass
class Attempt:
    """One try of one tier. `reason` is a short code (check:refusal, http_5xx, timeout,
    first_token_timeout, stream_cut, breaker_open, ...); `detail` says it in words."""

    tier: int
    model: str
    outcome: AttemptOutcome = "ok"
    reason: str = ""
    detail: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    checks: list[CheckResult] = field(default_factory=list)
    retry_after_s: float | None = None  # what the upstream asked for (429 / 503)
    rejection: Rejection | None = None  # the upstream refused the request as malformed
    held_usd: float | None = None  # the budget held for this call (its maximum cost)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "model": self.model,
            "outcome": self.outcome,
            "reason": self.reason,
            "detail": self.detail,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "latency_s": round(self.latency_s, 6),
            "checks": [c.to_dict() for c in self.checks],
        }


@dataclass
class RouteResult:
    """The cascade's record of one request; `completion` is None when no tier answered."""

    request: ChatRequest
    stream: bool = False
    request_id: str = field(default_factory=lambda: "req-" + uuid.uuid4().hex[:24])
    created: float = field(default_factory=time.time)
    attempts: list[Attempt] = field(default_factory=list)
    completion: Completion | None = None
    tier: int | None = None
    closed_cost_usd: float | None = None  # what the last tier would have cost for this answer
    latency_s: float = 0.0
    error: str | None = None  # set when the request ended without (a whole) answer
    pinned_tier: int | None = None  # the client named one tier's model: that tier only
    endpoint: str = "/chat/completions"
    rejection: Rejection | None = None  # the client's error, said by the gateway or upstream
    spending: Spending | None = None  # the key's budget, held call by call (None: no key)
    prompt_tokens_bound: int = 0  # a bound on the prompt's tokens, for holds

    @property
    def answered_by(self) -> str | None:
        return None if self.tier is None else self.attempts[-1].model

    @property
    def cost_usd(self) -> float:
        """Every attempt's cost, failed ones included."""
        return sum(a.cost_usd for a in self.attempts)

    @property
    def route(self) -> str:
        """direct | retried | fallback: how the answer was reached; failed: no tier answered;
        rejected: the request was the client's error; broken: a streamed answer had begun when
        its upstream failed."""
        if self.tier is None:
            return "rejected" if self.rejection is not None else "failed"
        if self.completion is None and self.error:
            return "broken"
        if self.pinned_tier is not None:  # the client named this tier: no cascade ran
            return "retried" if len(self.attempts) > 1 else "direct"
        if self.tier:
            return "fallback"
        return "retried" if len(self.attempts) > 1 else "direct"

    @property
    def failures(self) -> list[Attempt]:
        return [a for a in self.attempts if a.outcome != "ok"]

    def reasons(self) -> str:
        """`model=reason` for each failed attempt, ASCII (it goes into a header)."""
        return ", ".join(f"{a.model}={a.reason}" for a in self.failures)

    def summary(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "route": self.route,
            "answered_by": self.answered_by,
            "cost_usd": self.cost_usd,
            "attempts": [a.to_dict() for a in self.attempts],
        }

    @property
    def text(self) -> str:
        return "" if self.completion is None else self.completion.text


class AllTiersFailedError(OpenparityError):
    """No tier produced an answer that passed its checks."""

    def __init__(self, result: RouteResult) -> None:
        parts = [f"{a.model}: {a.reason} ({a.detail[:120]})" for a in result.failures]
        super().__init__(
            "every tier failed: " + "; ".join(parts),
            hint="see the ledger (openparity route stats) and /health for the upstreams",
        )
        self.result = result


class StreamBrokenError(OpenparityError):
    """The answer had started streaming to the client when its upstream failed."""

    def __init__(self, result: RouteResult, detail: str) -> None:
        super().__init__(f"the stream from {result.attempts[-1].model} broke: {detail}")
        self.result = result
