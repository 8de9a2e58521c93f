"""Keeping one upstream's failures from becoming everyone's: a circuit breaker (closed / open /
half-open, with a cooldown and Retry-After holds) and a bounded number of requests in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


@dataclass
class CircuitBreaker:
    """Opens after `failures` consecutive failures; after `cooldown_s` lets one probe through
    (half-open); the probe's success closes it, its failure opens it again. `hold(s)` keeps it
    open for at least s seconds (an upstream's Retry-After)."""

    failures: int = 5
    cooldown_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    consecutive: int = 0
    opened_at: float | None = None
    held_until: float = 0.0
    probing: bool = False
    trips: int = 0

    @property
    def state(self) -> BreakerState:
        return self._state(respect_hold=True)

    def _state(self, *, respect_hold: bool) -> BreakerState:
        now = self.clock()
        if respect_hold and now < self.held_until:
            return "open"
        if self.opened_at is None:
            return "closed"
        return "half_open" if now - self.opened_at >= self.cooldown_s else "open"

    def allow(self, *, waited_out_hold: bool = False) -> bool:
        """May a request go to this upstream now? A half-open breaker admits one probe. A retry
        that has just slept through the upstream's Retry-After passes its hold."""
        state = self._state(respect_hold=not waited_out_hold)
        if state == "closed":
            return True
        if state == "half_open" and not self.probing:
            self.probing = True
            return True
        return False

    def record_success(self) -> None:
        self.consecutive = 0
        self.opened_at = None
        self.probing = False

    def record_failure(self) -> None:
        self.consecutive += 1
        was_probe = self.probing
        self.probing = False
        if was_probe or (self.opened_at is None and self.consecutive >= self.failures):
            self.opened_at = self.clock()
            self.trips += 1

    def release_probe(self) -> None:
        """The probe ended without a verdict on the upstream (e.g. the client left)."""
        self.probing = False

    async def claim_probe(self) -> bool:
        """After `allow()`: may this request be the half-open probe? Always, in one process;
        replicas sharing a breaker let only one of them probe (SharedBreaker)."""
        return True

    def hold(self, seconds: float) -> None:
        self.held_until = max(self.held_until, self.clock() + seconds)

    def retry_in(self) -> float:
        """Seconds until the breaker admits a request again (0 when it does now)."""
        now = self.clock()
        wait = max(0.0, self.held_until - now)
        if self.opened_at is not None:
            wait = max(wait, self.opened_at + self.cooldown_s - now)
        return wait


@dataclass
class Slots:
    """At most `limit` requests in flight to one upstream; waiting longer than `timeout_s` for
    a slot means: try the next tier."""

    limit: int
    timeout_s: float
    _semaphore: asyncio.Semaphore = field(init=False)
    in_flight: int = 0

    def __post_init__(self) -> None:
        self._semaphore = asyncio.Semaphore(self.limit)

    async def acquire(self) -> bool:
        if self._semaphore.locked():
            if not self.timeout_s:
                return False
            try:
                await asyncio.wait_for(self._semaphore.acquire(), self.timeout_s)
            except TimeoutError:
                return False
        else:
            await self._semaphore.acquire()  # free: returns without waiting
        self.in_flight += 1
        return True

    def release(self) -> None:
        self.in_flight -= 1
        self._semaphore.release()
