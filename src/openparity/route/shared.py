"""State that several gateway replicas share through Redis (`shared_state.redis_url`).

- Per-key rate limits and budgets: one atomic Lua script per request takes a token from the
  key's bucket (Redis's clock, so hosts may disagree on theirs) and refuses a key whose shared
  spending has reached its budget; spending is added with INCRBYFLOAT when a request ends, and
  starts from the ledger's sum when Redis has none (first use, or a Redis that lost its data).
- Circuit breakers: every replica's failures, openings, Retry-After holds and recoveries are
  published on one channel and applied by every other replica, so consecutive failures count
  across replicas and a breaker opened on one is open on all within milliseconds. An opening
  and a hold also leave a key with a TTL, so a replica started later begins with them.
  A healthy upstream costs no Redis traffic: a success is published only after a failure.
  When the cooldown ends, one replica alone probes the upstream: the probe is claimed with a
  Redis key (SET NX, expiring after a cooldown), and the others keep the breaker open until
  the probe's verdict reaches them.

When Redis is unreachable, requests keep flowing: each replica falls back to its own buckets
and breakers (the limits then hold per replica, not across them) and says so in its log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from openparity.errors import OpenparityError
from openparity.route.resilience import CircuitBreaker

if TYPE_CHECKING:
    from openparity.route.cascade import HybridRouter
    from openparity.route.keys import ApiKey

LOG = logging.getLogger("openparity.gateway.shared")
POOL_SIZE = 64  # Redis connections per replica (one of them holds the breaker subscription)

# KEYS: bucket, spent. ARGV: rate (0: none), burst, budget (-1: none), the spending to start
# from when Redis has none (the ledger's). Returns {"ok", wait_s} or {"budget", spent}.
_ADMIT = """
if tonumber(ARGV[3]) >= 0 then
  if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SET', KEYS[2], ARGV[4]) end
  local spent = tonumber(redis.call('GET', KEYS[2]) or '0')
  if spent >= tonumber(ARGV[3]) then return {'budget', tostring(spent)} end
end
local rate = tonumber(ARGV[1])
if rate <= 0 then return {'ok', '0'} end
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or burst
local at = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], 3600)
return {'ok', tostring(wait)}
"""


class SharedStateError(OpenparityError):
    """The shared-state server cannot be used."""


@dataclass
class Admission:
    """A key's verdict: `wait_s` > 0 means over its rate; `over_budget` with what it spent."""

    wait_s: float = 0.0
    over_budget: bool = False
    spent_usd: float = 0.0


class SharedBreaker(CircuitBreaker):
    """A CircuitBreaker that tells the other replicas what it sees and applies what they see."""

    def __init__(self, base: CircuitBreaker, state: SharedState, tier: str) -> None:
        super().__init__(base.failures, base.cooldown_s, base.clock)
        self._shared, self._tier = state, tier

    def record_failure(self) -> None:
        opened_before = self.opened_at
        super().record_failure()
        self._shared.publish(self._tier, "failure")
        if self.opened_at is not None and self.opened_at != opened_before:  # (re)opened here
            self._shared.publish(self._tier, "open", self.cooldown_s)

    def record_success(self) -> None:
        had_trouble = self.consecutive > 0 or self.opened_at is not None
        super().record_success()
        if had_trouble:
            self._shared.publish(self._tier, "success")

    def hold(self, seconds: float) -> None:
        super().hold(seconds)
        self._shared.publish(self._tier, "hold", seconds)

    async def claim_probe(self) -> bool:
        if not self.probing:
            return True
        if await self._shared.claim_probe(self._tier, self.cooldown_s):
            return True
        self.probing = False  # another replica's probe: wait for its verdict
        return False

    def release_probe(self) -> None:
        was_probing = self.probing  # only the replica holding the claim gives it back
        super().release_probe()
        if was_probing:
            self._shared.release_probe(self._tier)

    def apply(self, event: str, seconds: float = 0.0) -> None:
        """Another replica's observation of this upstream."""
        if event == "failure":
            self.consecutive += 1
            if self.opened_at is None and self.consecutive >= self.failures:
                self._open_for(self.cooldown_s)
        elif event == "open":
            self._open_for(seconds)
        elif event == "success":
            self.consecutive, self.opened_at, self.probing = 0, None, False
        elif event == "hold":
            self.held_until = max(self.held_until, self.clock() + seconds)

    def _open_for(self, seconds: float) -> None:
        """Open, with `seconds` of cooldown left."""
        self.opened_at = self.clock() - max(0.0, self.cooldown_s - seconds)
        self.probing = False


@dataclass
class SharedState:
    """The Redis connection, the breaker channel and the key scripts of one gateway."""

    url: str
    prefix: str
    replica: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set, init=False, repr=False)
    _breakers: dict[str, SharedBreaker] = field(default_factory=dict, init=False, repr=False)
    _degraded: bool = field(default=False, init=False)
    _warned: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - the serve extra ships it
            raise SharedStateError(
                "shared_state needs the redis package", hint="pip install 'openparity[serve]'"
            ) from exc
        # a bounded pool that makes a request wait for a free connection (up to 2 s) rather
        # than fail: one replica never opens more than POOL_SIZE connections to Redis
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=POOL_SIZE, timeout=2, decode_responses=True,
            socket_timeout=2, socket_connect_timeout=2,
        )  # fmt: skip
        self._client = aioredis.Redis(connection_pool=pool)
        self._admit = self._client.register_script(_ADMIT)
        self._channel = f"{self.prefix}:breakers"

    async def start(self, router: HybridRouter) -> None:
        """Connect (one clear error if Redis is not there), share each tier's breaker and
        listen to the other replicas."""
        try:
            await self._client.ping()
        except Exception as exc:
            raise SharedStateError(
                f"cannot reach the shared-state Redis at {self.url} ({exc})",
                hint="start redis-server, or remove shared_state from the config to keep the"
                " state in this process (one worker only)",
            ) from None
        for tier in router.tiers:
            shared = SharedBreaker(tier.breaker, self, tier.name)
            left = await self._client.pttl(self._key("open", tier.name))
            if left > 0:
                shared._open_for(left / 1000)
            held = await self._client.pttl(self._key("hold", tier.name))
            if held > 0:
                shared.held_until = shared.clock() + held / 1000
            tier.breaker = shared
            self._breakers[tier.name] = shared
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel)
        self._spawn(self._listen(pubsub))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()

    # --- keys ---------------------------------------------------------------------------

    async def admit(self, key: ApiKey) -> Admission:
        """Budget and rate for one request, across every replica."""
        rate = key.rate_per_s or 0.0
        budget = -1.0 if key.budget_usd is None else key.budget_usd
        try:
            verdict, value = await self._admit(
                keys=[self._key("bucket", key.key_id), self._key("spent", key.key_id)],
                args=[rate, max(1.0, rate), budget, repr(key.spent_usd)],
            )
        except Exception as exc:
            self._lost(exc)
            return Admission(wait_s=key.take(), over_budget=key.over_budget)
        self._degraded = False
        if verdict == "budget":
            return Admission(over_budget=True, spent_usd=float(value))
        return Admission(wait_s=float(value))

    def spend(self, key: ApiKey, usd: float) -> None:
        """Add a finished request's cost to the key's shared spending."""
        key.spent_usd += usd
        if usd and key.budget_usd is not None:
            self._spawn(self._client.incrbyfloat(self._key("spent", key.key_id), usd))

    # --- breakers -----------------------------------------------------------------------

    async def claim_probe(self, tier: str, seconds: float) -> bool:
        """The right to probe `tier`'s upstream for `seconds` (or until released), for one
        replica; every replica may probe while Redis is lost."""
        try:
            claimed = await self._client.set(
                self._key("probe", tier), self.replica, nx=True, px=max(1, int(seconds * 1000))
            )
        except Exception as exc:
            self._lost(exc)
            return True
        return bool(claimed)

    def release_probe(self, tier: str) -> None:
        self._spawn(self._client.delete(self._key("probe", tier)))

    def publish(self, tier: str, event: str, seconds: float = 0.0) -> None:
        message = json.dumps({"from": self.replica, "tier": tier, "event": event, "s": seconds})
        self._spawn(self._publish(tier, event, seconds, message))

    async def _publish(self, tier: str, event: str, seconds: float, message: str) -> None:
        if event in ("open", "hold") and seconds > 0:
            await self._client.set(self._key(event, tier), "1", px=max(1, int(seconds * 1000)))
        elif event == "success":
            await self._client.delete(self._key("open", tier), self._key("probe", tier))
        await self._client.publish(self._channel, message)

    async def _listen(self, pubsub: Any) -> None:
        while True:
            try:
                async for message in pubsub.listen():
                    self._apply(message.get("data"))
            except asyncio.CancelledError:
                await pubsub.aclose()
                raise
            except Exception as exc:  # Redis went away: resubscribe when it is back
                self._lost(exc)
                await asyncio.sleep(1.0)
                try:
                    await pubsub.subscribe(self._channel)
                except Exception:
                    continue

    def _apply(self, data: Any) -> None:
        try:
            event = json.loads(data)
        except (TypeError, ValueError):
            return
        breaker = self._breakers.get(event.get("tier"))
        if breaker is not None and event.get("from") != self.replica:
            breaker.apply(str(event.get("event")), float(event.get("s") or 0.0))

    # --- plumbing -----------------------------------------------------------------------

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}:{kind}:{name}"

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._lost(task.exception())

    def _lost(self, exc: BaseException | None) -> None:
        now = time.monotonic()
        if not self._degraded or now - self._warned > 30:  # one line per outage, or per 30 s
            self._warned = now
            LOG.warning(
                "shared state at %s unavailable (%s): limits and breakers are per replica until"
                " it is back", self.url, exc,
            )  # fmt: skip
        self._degraded = True


def shared_state_for(url: str | None, name: str) -> SharedState | None:
    """The gateway's SharedState, or None when its state stays in the process."""
    return SharedState(url, prefix=f"openparity:{name}") if url else None
