"""Gateway API keys: stored as SHA-256 hashes in the ledger database (the one store every
replica reads), each with a rate limit (token bucket) and a spending budget in USD checked
against the ledger's costs."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
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
    key_id: str
    name: str
    rate_per_s: float | None
    budget_usd: float | None
    spent_usd: float = 0.0
    tokens: float = field(default=0.0, repr=False)  # the rate limiter's bucket
    refilled: float = field(default_factory=time.monotonic, repr=False)

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

    @property
    def over_budget(self) -> bool:
        return self.budget_usd is not None and self.spent_usd >= self.budget_usd


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def add_key(
    target: LedgerTarget, name: str, *, rate_per_s: float | None = None,
    budget_usd: float | None = None,
) -> str:  # fmt: skip
    """Create a key and return its secret (shown once; only its hash is stored)."""
    secret = PREFIX + secrets.token_urlsafe(32)
    db = LedgerDB(target)
    try:
        db.execute(
            "INSERT INTO api_keys VALUES (?,?,?,?,?,?,NULL)",
            ("key-" + secrets.token_hex(6), name, _hash(secret), rate_per_s, budget_usd,
             time.time()),
        )  # fmt: skip
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
            f"SELECT k.hash, k.key_id, k.name, k.rate_per_s, k.budget_usd, {spent}"
            " FROM api_keys k WHERE k.revoked IS NULL"
        )
    finally:
        db.close()
    return {
        h: ApiKey(key_id, name, rate, budget, float(spent), tokens=max(1.0, rate or 1.0))
        for h, key_id, name, rate, budget, spent in rows
    }


def list_keys(target: LedgerTarget) -> list[dict[str, object]]:
    return [
        {"key_id": k.key_id, "name": k.name, "rate_per_s": k.rate_per_s,
         "budget_usd": k.budget_usd, "spent_usd": round(k.spent_usd, 6)}
        for k in load_keys(target).values()
    ]  # fmt: skip


class KeyRing:
    """The server's view of the keys: look one up by the bearer secret. The database is read
    again at most every `refresh_s` seconds when a request comes, so a key added or revoked
    (by any replica's operator) takes effect on every replica within `refresh_s`."""

    def __init__(self, target: LedgerTarget, refresh_s: float = 5.0) -> None:
        self.target, self.refresh_s = target, refresh_s
        self._keys = load_keys(target)
        self._loaded = time.monotonic()

    def __len__(self) -> int:
        return len(self._keys)

    def find(self, secret: str) -> ApiKey | None:
        if time.monotonic() - self._loaded > self.refresh_s:
            try:
                self.reload()
            except LedgerStoreError as exc:  # the database is away: keep the keys we know
                self._loaded = time.monotonic()
                LOG.warning("keys not re-read: %s", exc.message)
        return self._keys.get(_hash(secret))

    def reload(self) -> None:
        """Read the keys again (the ledger is summed only at start: spending since then is
        counted here, or in the shared state)."""
        fresh = load_keys(self.target, spending=False)
        for h, key in fresh.items():  # keep live buckets and in-memory spending
            old = self._keys.get(h)
            if old is not None:
                key.tokens, key.refilled = old.tokens, old.refilled
                key.spent_usd = max(key.spent_usd, old.spent_usd)
        self._keys, self._loaded = fresh, time.monotonic()
