"""State that several gateway replicas share through Redis (`shared_state.redis_url`).

- Per-key request rates and tokens per minute: one atomic Lua script per request takes from
  the key's buckets (Redis's clock, so hosts may disagree on theirs).
- Budgets: before each upstream call, a script holds the call's maximum cost against the key's
  budget, atomically across replicas (spent + held + this call <= budget, or it is refused);
  when the call ends, another releases the hold and adds the real cost. Holds expire, so a
  replica killed mid-call frees them. The ledger is the source of truth: where Redis has no
  spending for a key (first use, or a Redis that lost its data) it is rebuilt from the
  ledger's sum before anything is held.
- Circuit breakers: every replica's failures, openings, Retry-After holds and recoveries are
  published on one channel and applied by every other replica, so consecutive failures count
  across replicas and a breaker opened on one is open on all within milliseconds. An opening
  and a hold also leave a key with a TTL, so a replica started later begins with them.
  A healthy upstream costs no Redis traffic: a success is published only after a failure.
  When the cooldown ends, one replica alone probes the upstream: the probe is claimed with a
  Redis key (SET NX, expiring after a cooldown), and the others keep the breaker open until
  the probe's verdict reaches them.

When Redis is unreachable or slow (no answer within `shared_state.timeout_s`), requests keep
flowing: each replica falls back to its own buckets, budgets and breakers (the limits then hold
per replica, not across them) and says so in one log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from openparity.errors import OpenparityError
from openparity.route.outcome import HoldVerdict
from openparity.route.resilience import CircuitBreaker

if TYPE_CHECKING:
    from openparity.route.cascade import HybridRouter
    from openparity.route.keys import ApiKey

LOG = logging.getLogger("openparity.gateway.shared")
POOL_SIZE = 64  # Redis connections per replica (one of them holds the breaker subscription)

# KEYS: request bucket, token bucket. ARGV: rate (0: none), burst, tokens per minute (0: none),
# the request's estimated tokens. Returns {"rate" | "tokens" | "ok", wait_s}.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function level(key, per_s, burst)
  local bucket = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(bucket[1]) or burst
  local at = tonumber(bucket[2]) or now
  return math.min(burst, tokens + math.max(0, now - at) * per_s)
end
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tpm, estimate = tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens, words = 0, 0
if rate > 0 then
  tokens = level(KEYS[1], rate, burst)
  if tokens < 1 then return {'rate', tostring((1 - tokens) / rate)} end
end
if tpm > 0 then
  words = level(KEYS[2], tpm / 60, tpm)
  if words < estimate then
    redis.call('HSET', KEYS[2], 'tokens', tostring(words), 'at', tostring(now))
    return {'tokens', tostring((estimate - words) / (tpm / 60))}
  end
  redis.call('HSET', KEYS[2], 'tokens', tostring(words - estimate), 'at', tostring(now))
  redis.call('EXPIRE', KEYS[2], 3600)
end
if rate > 0 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'at', tostring(now))
  redis.call('EXPIRE', KEYS[1], 3600)
end
return {'ok', '0'}
"""

# KEYS: token bucket. ARGV: tokens per minute, tokens to give back (negative: take more).
_RETURN_TOKENS = """
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or ARGV[1])
tokens = math.min(tonumber(ARGV[1]), tokens + tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens))
return 1
"""

# KEYS: spent, holds (a sorted set: member "id|usd", score its expiry). ARGV: budget, usd,
# member id, seconds the hold lives. Returns {"ok" | "budget" | "rebuild", spent, held}:
# "rebuild" when Redis has no spending for the key (first use, or Redis lost its data).
_HOLD = """
local spent = redis.call('GET', KEYS[1])
if not spent then return {'rebuild', '0', '0'} end
spent = tonumber(spent)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local held = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  held = held + tonumber(string.match(member, '|(.+)$'))
end
local budget, usd = tonumber(ARGV[1]), tonumber(ARGV[2])
if spent >= budget or spent + held + usd > budget * (1 + 1e-9) then
  return {'budget', tostring(spent), tostring(held)}
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3] .. '|' .. ARGV[2])
redis.call('PEXPIRE', KEYS[2], math.floor(tonumber(ARGV[4]) * 2000))
return {'ok', tostring(spent), tostring(held)}
"""

# KEYS: spent, holds. ARGV: the hold's member, the call's real cost. Spending is added only
# where Redis has it: a key being rebuilt takes this cost from the ledger instead.
_SETTLE = """
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBYFLOAT', KEYS[1], ARGV[2]) end
return 1
"""


class SharedStateError(OpenparityError):
    """The shared-state server cannot be used."""


@dataclass
class Admission:
    """A key's verdict: `wait_s` > 0 means over its request rate (`limit` "rate") or its
    tokens per minute (`limit` "tokens")."""

    wait_s: float = 0.0
    limit: str = "rate"


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
    timeout_s: float = 0.25  # the longest a request waits on Redis before going on without it
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
            self.url,
            max_connections=POOL_SIZE,
            timeout=2,
            decode_responses=True,
            socket_timeout=2,
            socket_connect_timeout=2,
        )
        self._client = aioredis.Redis(connection_pool=pool)
        self._admit = self._client.register_script(_ADMIT)
        self._return_tokens = self._client.register_script(_RETURN_TOKENS)
        self._hold = self._client.register_script(_HOLD)
        self._settle = self._client.register_script(_SETTLE)
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

    async def admit(self, key: ApiKey, estimate: int) -> Admission:
        """Request rate and tokens per minute for one request, across every replica (this
        replica's own buckets while Redis is away or slow)."""
        rate, tpm = key.rate_per_s or 0.0, key.tokens_per_min or 0.0
        try:
            async with asyncio.timeout(self.timeout_s):
                verdict, value = await self._admit(
                    keys=[self._key("bucket", key.key_id), self._key("tpm", key.key_id)],
                    args=[rate, max(1.0, rate), tpm, estimate],
                )
        except Exception as exc:
            self._lost(exc)
            wait = key.take()
            if wait:
                return Admission(wait, "rate")
            return Admission(key.take_tokens(estimate), "tokens")
        self._degraded = False
        return Admission(float(value), "tokens" if verdict == "tokens" else "rate")

    def return_tokens(self, key: ApiKey, unused: int) -> None:
        """Settle the key's tokens-per-minute bucket with the request's real token count."""
        key.return_tokens(unused)
        if key.tokens_per_min and unused:
            tpm = key.tokens_per_min
            self._spawn(
                self._return_tokens(keys=[self._key("tpm", key.key_id)], args=[tpm, unused])
            )

    async def hold(
        self,
        key: ApiKey,
        usd: float,
        member: str,
        seconds: float,
        spent_in_ledger: Callable[[], Awaitable[float]],
    ) -> HoldVerdict:
        """Reserve `usd` of the key's budget for one upstream call, atomically across every
        replica. Where Redis has no spending for the key, it is rebuilt from the ledger
        (`spent_in_ledger`) first. While Redis is away or slow, this replica's own accounting
        decides (and says so in its log)."""
        keys = [self._key("spent", key.key_id), self._key("holds", key.key_id)]
        args = [key.budget_usd, repr(usd), member, seconds]
        try:
            for _ in range(2):
                async with asyncio.timeout(self.timeout_s):
                    verdict, spent, held = await self._hold(keys=keys, args=args)
                if verdict != "rebuild":
                    break
                total = await spent_in_ledger()
                async with asyncio.timeout(self.timeout_s):
                    await self._client.set(keys[0], repr(total), nx=True)
        except Exception as exc:
            self._lost(exc)
            return HoldVerdict(key.hold(usd), key.spent_usd, key.held_usd)
        self._degraded = False
        if verdict == "ok":
            key.held_usd += usd
        return HoldVerdict(verdict == "ok", float(spent), float(held))

    def settle(self, key: ApiKey, member: str, held: float, cost: float) -> None:
        """The call ended: release its hold and add what it really cost (in Redis in the
        background, retried while Redis is away)."""
        key.settle(held, cost)
        keys = [self._key("spent", key.key_id), self._key("holds", key.key_id)]
        stored = f"{member}|{held!r}"  # as _HOLD stored it
        self._spawn(self._settle_until_done(keys, [stored, repr(cost)]))

    async def _settle_until_done(self, keys: list[str], args: list[str]) -> None:
        for wait in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0):
            await asyncio.sleep(wait)
            try:
                async with asyncio.timeout(max(self.timeout_s, 1.0)):
                    await self._settle(keys=keys, args=args)
                return
            except Exception as exc:
                self._lost(exc)
        LOG.warning(
            "a settlement of %s was not written to shared state: it will count once"
            " the spending is rebuilt from the ledger",
            keys[0],
        )

    # --- breakers -----------------------------------------------------------------------

    async def claim_probe(self, tier: str, seconds: float) -> bool:
        """The right to probe `tier`'s upstream for `seconds` (or until released), for one
        replica; every replica may probe while Redis is lost."""
        try:
            async with asyncio.timeout(self.timeout_s):
                claimed = await self._client.set(
                    self._key("probe", tier),
                    self.replica,
                    nx=True,
                    px=max(1, int(seconds * 1000)),
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
                " it is back",
                self.url,
                exc,
            )
        self._degraded = True


def shared_state_for(url: str | None, name: str, timeout_s: float = 0.25) -> SharedState | None:
    """The gateway's SharedState, or None when its state stays in the process."""
    return SharedState(url, prefix=f"openparity:{name}", timeout_s=timeout_s) if url else None
