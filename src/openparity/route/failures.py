"""What an upstream failure means for the cascade: its reason code (retry it, count it against the
breaker, try the next tier, or hand the upstream's refusal to the client as it said it)."""

from __future__ import annotations

from openparity.errors import OpenparityError
from openparity.models.errors import (
    BackendUnavailableError,
    MissingAPIKeyError,
    ModelCallError,
    UnknownModelError,
)
from openparity.models.retry import RETRYABLE_STATUS
from openparity.route.outcome import Rejection, RouteResult
from openparity.route.tier import Tier


class StreamFailed(Exception):
    def __init__(self, reason: str, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.retry_after_s = reason, detail, retry_after_s


def retry_after(exc: OpenparityError) -> float | None:
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


def classify(exc: OpenparityError) -> tuple[str, str]:
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


def rejection(tier: Tier, reason: str, exc: OpenparityError) -> Rejection | None:
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


def too_long_for_every_tier(result: RouteResult) -> Rejection | None:
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
