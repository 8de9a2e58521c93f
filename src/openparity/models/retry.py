"""When to retry a failed HTTP call and how long to wait: exponential backoff with full jitter,
overridden by the server's Retry-After (seconds, HTTP date, or retry-after-ms)."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff settings. `max_retries` counts retries after the first attempt."""

    max_retries: int = 4
    initial_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Full-jitter delay before retry number `retry` (0-based)."""
        ceiling = min(self.max_delay_s, self.initial_delay_s * (2**retry))
        return (rng or random).uniform(0, ceiling)

    def delay(self, retry: int, headers: Mapping[str, str] | None = None) -> float:
        """The server's Retry-After when it gave one (capped), else the jittered backoff."""
        hinted = retry_after_seconds(headers) if headers is not None else None
        if hinted is not None:
            return min(hinted, self.max_retry_after_s)
        return self.backoff(retry)


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait, from retry-after-ms or Retry-After; None if absent."""
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
