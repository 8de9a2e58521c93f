"""Where the gateway's ledger and keys live: a SQLite file (the default) or a PostgreSQL server
(`ledger.url: postgresql://...`, shared by every replica). One small connection type, with `?`
placeholders and the same tables on both, so the ledger, the key store and `route stats` are
written once."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from openparity.errors import OpenparityError
from openparity.redact import redact_url

LedgerTarget = Path | str  # a SQLite file, or a postgresql:// URL

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY, created REAL NOT NULL, key_id TEXT, stream INTEGER NOT NULL,
    status INTEGER NOT NULL, route TEXT NOT NULL, answered_by TEXT, tier INTEGER,
    prompt_tokens INTEGER, completion_tokens INTEGER, cost_usd REAL NOT NULL,
    closed_cost_usd REAL, latency_s REAL NOT NULL, error TEXT, prompt TEXT, answer TEXT
);
CREATE TABLE IF NOT EXISTS attempts (
    request_id TEXT NOT NULL, n INTEGER NOT NULL, tier INTEGER NOT NULL, model TEXT NOT NULL,
    outcome TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, prompt_tokens INTEGER,
    completion_tokens INTEGER, cost_usd REAL NOT NULL, latency_s REAL NOT NULL, checks TEXT,
    PRIMARY KEY (request_id, n)
);
CREATE INDEX IF NOT EXISTS requests_key ON requests (key_id);
CREATE INDEX IF NOT EXISTS requests_created ON requests (created);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, hash TEXT NOT NULL UNIQUE,
    rate_per_s REAL, budget_usd REAL, created REAL NOT NULL, revoked REAL
);
"""
# Columns added after a ledger may have been created: (table, column, type).
ADDED_COLUMNS = (("api_keys", "tokens_per_min", "REAL"),)


class LedgerStoreError(OpenparityError):
    """The ledger database cannot be opened, read or written."""


class LedgerConflict(LedgerStoreError):
    """A row breaks a uniqueness rule (a key name that exists already)."""


def is_postgres(target: LedgerTarget) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def as_target(text: str) -> LedgerTarget:
    """A command-line ledger argument: a postgresql:// URL as is, anything else a file path."""
    return text if is_postgres(text) else Path(text)


def describe(target: LedgerTarget) -> str:
    """The target for messages: a URL without its password."""
    return redact_url(str(target))


class LedgerDB:
    """One connection to the ledger database, its tables created. SQL uses `?` placeholders;
    `insert()` ignores a row whose key is already there (a batch written twice)."""

    def __init__(self, target: LedgerTarget, *, read_only: bool = False) -> None:
        self.target, self.postgres = target, is_postgres(target)
        self.label = describe(target)
        if self.postgres:
            self._errors, self._conflicts = _postgres_errors()
            self._conn: Any = self._open_postgres(str(target))
        else:
            self._errors, self._conflicts = (sqlite3.Error,), (sqlite3.IntegrityError,)
            self._conn = self._open_sqlite(Path(target), read_only)

    def _open_postgres(self, url: str) -> Any:
        import psycopg

        try:
            conn = psycopg.connect(url, connect_timeout=10, autocommit=True)
            with conn.transaction():  # replicas starting together: one creates the tables
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('openparity-ledger'))")
                conn.execute(SCHEMA.replace(" REAL", " DOUBLE PRECISION"))
                for table, column, kind in ADDED_COLUMNS:
                    kind = kind.replace("REAL", "DOUBLE PRECISION")
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
        except psycopg.Error as exc:
            raise LedgerStoreError(
                f"cannot use the PostgreSQL ledger at {self.label} ({_first_line(exc)})",
                hint="check ledger.url, that the server runs and that the user may create tables",
            ) from None
        return conn

    def _open_sqlite(self, path: Path, read_only: bool) -> sqlite3.Connection:
        try:
            if read_only:
                return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            for table, column, kind in ADDED_COLUMNS:
                present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column not in present:
                    try:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                    except sqlite3.OperationalError as exc:  # another replica added it first
                        if "duplicate column" not in str(exc):
                            raise
        except (sqlite3.Error, OSError) as exc:
            raise LedgerStoreError(f"cannot open the ledger {path} ({exc})") from None
        return conn

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._translated():
            return [tuple(row) for row in self._conn.execute(self._sql(sql), params).fetchall()]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement in its own transaction; the number of rows it changed."""
        with self.transaction():
            return int(self._conn.execute(self._sql(sql), params).rowcount)

    def insert(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows (inside a transaction()), skipping those whose key exists."""
        if not rows:
            return
        marks = ",".join("?" * len(rows[0]))
        if self.postgres:
            sql = f"INSERT INTO {table} VALUES ({marks}) ON CONFLICT DO NOTHING"
        else:
            sql = f"INSERT OR IGNORE INTO {table} VALUES ({marks})"
        with self._translated():
            self._conn.cursor().executemany(self._sql(sql), rows)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Statements inside commit together, or not at all."""
        with self._translated(), self._conn.transaction() if self.postgres else self._conn:
            yield

    def close(self) -> None:
        self._conn.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except self._conflicts as exc:
            raise LedgerConflict(f"{self.label}: {_first_line(exc)}") from None
        except self._errors as exc:
            raise LedgerStoreError(f"the ledger {self.label} failed ({_first_line(exc)})") from None


def _postgres_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    try:
        import psycopg
    except ImportError:
        raise LedgerStoreError(
            "a postgresql:// ledger needs psycopg", hint="pip install 'openparity[serve]'"
        ) from None
    return (psycopg.Error,), (psycopg.errors.UniqueViolation,)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
