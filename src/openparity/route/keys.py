"""Gateway API keys: stored as SHA-256 hashes in the ledger database (the one store every
replica reads), each with a rate limit (token bucket) and a spending budget in USD checked
against the ledger's costs."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from openparity.errors import OpenparityError
from openparity.route.ledger_db import (
    LedgerConflict,
    LedgerDB,
    LedgerStoreError,
    LedgerTarget,
    describe,
)

LOG = logging.getLogger("openparity.gateway.keys")

PREFIX = "op-"


class GatewayKeyError(OpenparityError):
    """A key cannot be created, found or revoked."""


@dataclass
class ApiKey:
    """A gateway key with its limits and, in this process, its spending and buckets. With
    shared state (Redis) the spending, holds and buckets that count are Redis's."""

    key_id: str
    name: str
    rate_per_s: float | None
    budget_usd: float | None
    spent_usd: float = 0.0
    tokens_per_min: float | None = None
    held_usd: float = 0.0  # the maximum cost of this key's upstream calls now in flight
    tokens: float = field(default=0.0, repr=False)  # the request-rate bucket
    refilled: float = field(default_factory=time.monotonic, repr=False)
    token_bucket: float | None = field(default=None, repr=False)  # the tokens-per-minute bucket
    token_refilled: float = field(default_factory=time.monotonic, repr=False)

    def take(self) -> float:
        """0 when a request may go now, else the seconds until one may (token bucket with a
        burst of one second's worth)."""
        if self.rate_per_s is None:
            return 0.0
        now = time.monotonic()
        burst = max(1.0, self.rate_per_s)
        self.tokens = min(burst, self.tokens + (now - self.refilled) * self.rate_per_s)
        self.refilled = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate_per_s

    def take_tokens(self, estimate: int) -> float:
        """0 when a request of about `estimate` tokens may go now (they are taken from the
        tokens-per-minute bucket), else the seconds until it may."""
        if self.tokens_per_min is None:
            return 0.0
        now = time.monotonic()
        per_s = self.tokens_per_min / 60.0
        level = self.tokens_per_min if self.token_bucket is None else self.token_bucket
        level = min(self.tokens_per_min, level + (now - self.token_refilled) * per_s)
        self.token_refilled = now
        if level >= estimate:
            self.token_bucket = level - estimate
            return 0.0
        self.token_bucket = level
        return (estimate - level) / per_s

    def return_tokens(self, unused: int) -> None:
        """Settle the bucket once the request's real token count is known (negative: the
        request used more than its estimate)."""
        if self.tokens_per_min is not None and self.token_bucket is not None:
            self.token_bucket = min(self.tokens_per_min, self.token_bucket + unused)

    def hold(self, usd: float) -> bool:
        """Reserve `usd` of the budget for an upstream call, if the budget can cover it on top
        of what is spent and held."""
        if self.budget_usd is None:
            return True
        if self.over_budget or self.spent_usd + self.held_usd + usd > self.budget_usd * (1 + 1e-9):
            return False
        self.held_usd += usd
        return True

    def settle(self, held: float, cost: float) -> None:
        self.held_usd = max(0.0, self.held_usd - held)
        self.spent_usd += cost

    @property
    def over_budget(self) -> bool:
        return self.budget_usd is not None and self.spent_usd >= self.budget_usd


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def add_key(
    target: LedgerTarget,
    name: str,
    *,
    rate_per_s: float | None = None,
    budget_usd: float | None = None,
    tokens_per_min: float | None = None,
) -> str:
    """Create a key and return its secret (shown once; only its hash is stored)."""
    secret = PREFIX + secrets.token_urlsafe(32)
    db = LedgerDB(target)
    try:
        db.execute(
            "INSERT INTO api_keys (key_id, name, hash, rate_per_s, budget_usd, created,"
            " tokens_per_min) VALUES (?,?,?,?,?,?,?)",
            (
                "key-" + secrets.token_hex(6),
                name,
                _hash(secret),
                rate_per_s,
                budget_usd,
                time.time(),
                tokens_per_min,
            ),
        )
    except LedgerConflict:
        raise GatewayKeyError(
            f"a key named {name!r} already exists in {db.label}",
            hint="pick another name, or revoke it first: openparity route keys revoke NAME",
        ) from None
    finally:
        db.close()
    return secret


def revoke_key(target: LedgerTarget, name: str) -> None:
    db = LedgerDB(target)
    try:
        found = db.execute(
            "UPDATE api_keys SET revoked=? WHERE name=? AND revoked IS NULL", (time.time(), name)
        )
    finally:
        db.close()
    if not found:
        raise GatewayKeyError(f"no active key named {name!r} in {describe(target)}")


def load_keys(target: LedgerTarget, *, spending: bool = True) -> dict[str, ApiKey]:
    """Active keys by hash, with what each has spent so far (from the ledger; 0 without
    `spending`, which skips summing the ledger)."""
    spent = (
        "COALESCE((SELECT SUM(cost_usd) FROM requests r WHERE r.key_id = k.key_id), 0)"
        if spending
        else "0"
    )
    db = LedgerDB(target)
    try:
        rows = db.query(
            f"SELECT k.hash, k.key_id, k.name, k.rate_per_s, k.budget_usd, {spent},"
            " k.tokens_per_min FROM api_keys k WHERE k.revoked IS NULL"
        )
    finally:
        db.close()
    return {
        h: ApiKey(key_id, name, rate, budget, float(spent), tpm, tokens=max(1.0, rate or 1.0))
        for h, key_id, name, rate, budget, spent, tpm in rows
    }


def spent_by(target: LedgerTarget, key_id: str) -> float:
    """What the ledger says `key_id` has spent: the source of truth shared state is rebuilt
    from."""
    db = LedgerDB(target)
    try:
        rows = db.query("SELECT COALESCE(SUM(cost_usd), 0) FROM requests WHERE key_id=?", (key_id,))
    finally:
        db.close()
    return float(rows[0][0])


def list_keys(target: LedgerTarget) -> list[dict[str, object]]:
    return [
        {
            "key_id": k.key_id,
            "name": k.name,
            "rate_per_s": k.rate_per_s,
            "tokens_per_min": k.tokens_per_min,
            "budget_usd": k.budget_usd,
            "spent_usd": round(k.spent_usd, 9),
        }
        for k in load_keys(target).values()
    ]


STORE_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="key-store")


class KeyRing:
    """The server's view of the keys: look one up by the bearer secret. `keep_fresh()` reads
    them again every `refresh_s` seconds in a store thread, so a key added or revoked (by any
    replica's operator) takes effect on every replica within about `refresh_s`. A lookup never
    waits on the database: while it is slow or away, the last known keys answer, and one log
    line says so (another when it is back)."""

    def __init__(self, target: LedgerTarget, refresh_s: float = 1.0) -> None:
        self.target, self.refresh_s = target, refresh_s
        self._keys = load_keys(target)
        self._loaded = time.monotonic()
        self._stale_warned = False

    def __len__(self) -> int:
        return len(self._keys)

    def find(self, secret: str) -> ApiKey | None:
        return self._keys.get(_hash(secret))

    def reload(self) -> None:
        """Read the keys again now (blocking; the server uses keep_fresh)."""
        self._merge(load_keys(self.target, spending=False))

    async def keep_fresh(self) -> None:
        """Re-read the keys every `refresh_s` until cancelled, never on the event loop."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.refresh_s)
            reading = loop.run_in_executor(STORE_THREADS, self._read)
            while not reading.done():
                await asyncio.wait({reading}, timeout=max(2.0, 3 * self.refresh_s))
                stale = time.monotonic() - self._loaded
                if not reading.done() and not self._stale_warned:
                    self._stale_warned = True
                    LOG.warning(
                        "keys not re-read for %.0fs: %s is slow or away; requests use the last"
                        " known keys",
                        stale,
                        describe(self.target),
                    )
            fresh = reading.result()
            if fresh is None:
                continue
            self._merge(fresh)
            if self._stale_warned:
                self._stale_warned = False
                LOG.warning("keys re-read from %s again", describe(self.target))

    def _read(self) -> dict[str, ApiKey] | None:
        """The database's keys (in a store thread); None when it cannot be read."""
        try:
            return load_keys(self.target, spending=False)
        except LedgerStoreError as exc:  # the database is away: keep the keys we know
            LOG.warning("keys not re-read: %s", exc.message)
            return None

    def _merge(self, fresh: dict[str, ApiKey]) -> None:
        """Take the database's keys, keeping live buckets, holds and in-memory spending (the
        ledger is summed only at start: spending since then is counted here, or in the shared
        state)."""
        for h, key in fresh.items():
            old = self._keys.get(h)
            if old is not None:
                key.tokens, key.refilled = old.tokens, old.refilled
                key.token_bucket, key.token_refilled = old.token_bucket, old.token_refilled
                key.spent_usd = max(key.spent_usd, old.spent_usd)
                key.held_usd = old.held_usd
        self._keys, self._loaded = fresh, time.monotonic()
