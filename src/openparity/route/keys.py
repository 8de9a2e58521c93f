"""Gateway API keys: stored as SHA-256 hashes in the ledger database, each with a rate limit
(token bucket) and a spending budget in USD checked against the ledger's costs."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from openparity.errors import OpenparityError
from openparity.route.ledger import connect

KEYS_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, hash TEXT NOT NULL UNIQUE,
    rate_per_s REAL, budget_usd REAL, created REAL NOT NULL, revoked REAL
);
"""
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


def _db(path: Path) -> sqlite3.Connection:
    db = connect(path)
    db.executescript(KEYS_SCHEMA)
    return db


def add_key(
    path: Path, name: str, *, rate_per_s: float | None = None, budget_usd: float | None = None
) -> str:
    """Create a key and return its secret (shown once; only its hash is stored)."""
    secret = PREFIX + secrets.token_urlsafe(32)
    db = _db(path)
    try:
        with db:
            db.execute(
                "INSERT INTO api_keys VALUES (?,?,?,?,?,?,NULL)",
                ("key-" + secrets.token_hex(6), name, _hash(secret), rate_per_s, budget_usd,
                 time.time()),
            )  # fmt: skip
    except sqlite3.IntegrityError:
        raise GatewayKeyError(
            f"a key named {name!r} already exists in {path}",
            hint="pick another name, or revoke it first: openparity route keys revoke NAME",
        ) from None
    finally:
        db.close()
    return secret


def revoke_key(path: Path, name: str) -> None:
    db = _db(path)
    try:
        with db:
            found = db.execute(
                "UPDATE api_keys SET revoked=? WHERE name=? AND revoked IS NULL",
                (time.time(), name),
            ).rowcount
    finally:
        db.close()
    if not found:
        raise GatewayKeyError(f"no active key named {name!r} in {path}")


def load_keys(path: Path, *, spending: bool = True) -> dict[str, ApiKey]:
    """Active keys by hash, with what each has spent so far (from the ledger; 0 without
    `spending`, which skips summing the ledger)."""
    spent = (
        "COALESCE((SELECT SUM(cost_usd) FROM requests r WHERE r.key_id = k.key_id), 0)"
        if spending
        else "0"
    )
    db = _db(path)
    try:
        rows = db.execute(
            f"SELECT k.hash, k.key_id, k.name, k.rate_per_s, k.budget_usd, {spent}"
            " FROM api_keys k WHERE k.revoked IS NULL"
        ).fetchall()
    finally:
        db.close()
    return {
        h: ApiKey(key_id, name, rate, budget, spent, tokens=max(1.0, rate or 1.0))
        for h, key_id, name, rate, budget, spent in rows
    }


def list_keys(path: Path) -> list[dict[str, object]]:
    return [
        {"key_id": k.key_id, "name": k.name, "rate_per_s": k.rate_per_s,
         "budget_usd": k.budget_usd, "spent_usd": round(k.spent_usd, 6)}
        for k in load_keys(path).values()
    ]  # fmt: skip


class KeyRing:
    """The server's view of the keys: look one up by the bearer secret. The database is read
    again at most every `refresh_s` seconds when a request comes, so a key added or revoked
    (by any replica's operator) takes effect on every replica within `refresh_s`."""

    def __init__(self, path: Path, refresh_s: float = 5.0) -> None:
        self.path, self.refresh_s = path, refresh_s
        self._keys = load_keys(path)
        self._loaded = time.monotonic()

    def __len__(self) -> int:
        return len(self._keys)

    def find(self, secret: str) -> ApiKey | None:
        if time.monotonic() - self._loaded > self.refresh_s:
            self.reload()
        return self._keys.get(_hash(secret))

    def reload(self) -> None:
        """Read the keys again (the ledger is summed only at start: spending since then is
        counted here, or in the shared state)."""
        fresh = load_keys(self.path, spending=False)
        for h, key in fresh.items():  # keep live buckets and in-memory spending
            old = self._keys.get(h)
            if old is not None:
                key.tokens, key.refilled = old.tokens, old.refilled
                key.spent_usd = max(key.spent_usd, old.spent_usd)
        self._keys, self._loaded = fresh, time.monotonic()
