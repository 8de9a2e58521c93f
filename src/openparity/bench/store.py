"""The run store: one SQLite file (WAL) holding runs, one record per item and sample, and the
response cache (a `models.cache.ResponseCache`). Records are committed as they finish, so a
killed run loses nothing it had."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openparity.bench.errors import RunStoreError
from openparity.models.types import Completion

DEFAULT_STORE = Path(".openparity/runs.sqlite")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, model TEXT NOT NULL, task TEXT NOT NULL, settings TEXT NOT NULL,
    item_ids TEXT NOT NULL, source TEXT NOT NULL, fixture INTEGER NOT NULL,
    metric TEXT NOT NULL, margin REAL NOT NULL, status TEXT NOT NULL, created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    run_id TEXT NOT NULL REFERENCES runs(run_id), item_id TEXT NOT NULL, sample INTEGER NOT NULL,
    cluster TEXT, prompt_hash TEXT NOT NULL, response TEXT, extracted TEXT, score REAL,
    detail TEXT, finish_reason TEXT, prompt_tokens INTEGER, completion_tokens INTEGER,
    cost_usd REAL, latency_s REAL, error TEXT, created REAL NOT NULL, mean_logprob REAL,
    PRIMARY KEY (run_id, item_id, sample)
);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY, completion TEXT NOT NULL, created REAL NOT NULL
);
"""


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    model: str
    task: str
    settings: dict[str, Any]
    item_ids: list[str]
    source: str
    fixture: bool
    metric: str
    margin: float
    status: str = "running"
    created: float = 0.0
    updated: float = 0.0


@dataclass(frozen=True)
class Record:
    run_id: str
    item_id: str
    sample: int
    prompt_hash: str
    cluster: str | None = None
    response: str | None = None
    extracted: str | None = None
    score: float | None = None
    detail: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    latency_s: float | None = None
    error: str | None = None
    mean_logprob: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.score is not None


class RunStore:
    """Runs and records in one SQLite file. Safe for one writer and many readers."""

    def __init__(self, path: Path = DEFAULT_STORE) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(records)")}
            if "mean_logprob" not in columns:  # a store from before logprob recording
                self._db.execute("ALTER TABLE records ADD COLUMN mean_logprob REAL")
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(runs)")}
            if "owner" not in columns:  # a store from before run ownership
                self._db.execute("ALTER TABLE runs ADD COLUMN owner TEXT")
        except (sqlite3.Error, OSError) as exc:
            raise RunStoreError(
                f"cannot open the run store {self.path} ({exc})",
                hint="check the path and free disk space, or pass --store PATH",
            ) from None
        self._db.row_factory = sqlite3.Row

    @classmethod
    def existing(cls, path: Path) -> RunStore:
        """The store at `path` for reading: one clear error, and nothing created, when there
        is none (a command that only reads must not leave a .openparity/ behind)."""
        if not Path(path).is_file():
            raise RunStoreError(
                f"no run store at {path}",
                hint="`openparity bench run` or `openparity gap` creates it; --store PATH names"
                " another",
            )
        return cls(path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _write(self, sql: str, params: Iterable[Any]) -> None:
        try:
            self._db.execute(sql, tuple(params))
        except sqlite3.OperationalError as exc:  # disk full, read-only file, locked too long
            raise RunStoreError(
                f"cannot write to the run store {self.path} ({exc})",
                hint="free disk space or fix permissions; finished items are kept, resume later"
                " with --resume",
            ) from None

    # runs
    def create_run(self, run: RunInfo) -> RunInfo:
        now = time.time()
        self._write(
            "INSERT INTO runs (run_id, model, task, settings, item_ids, source, fixture, metric,"
            " margin, status, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                run.run_id,
                run.model,
                run.task,
                json.dumps(run.settings, sort_keys=True),
                json.dumps(run.item_ids),
                run.source,
                int(run.fixture),
                run.metric,
                run.margin,
                run.status,
                now,
                now,
            ),
        )
        return self.get_run(run.run_id)

    def find_run(self, run_id: str) -> RunInfo | None:
        row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else _run_from_row(row)

    def get_run(self, run_id: str) -> RunInfo:
        run = self.find_run(run_id)
        if run is None:
            matches = [r for r in self.list_runs() if r.run_id.startswith(run_id)]
            if len(matches) == 1:
                return matches[0]
            hint = "list runs with: openparity bench runs"
            if matches:
                hint = "ambiguous prefix; candidates: " + ", ".join(r.run_id for r in matches[:5])
            raise RunStoreError(f"no run {run_id!r} in {self.path}", hint=hint)
        return run

    def list_runs(self) -> list[RunInfo]:
        rows = self._db.execute("SELECT * FROM runs ORDER BY created").fetchall()
        return [_run_from_row(r) for r in rows]

    def set_status(self, run_id: str, status: str) -> None:
        """Set a run's status; a "running" run is owned by this process until it ends."""
        owner = _this_process() if status == "running" else None
        self._write(
            "UPDATE runs SET status = ?, updated = ?, owner = ? WHERE run_id = ?",
            (status, time.time(), owner, run_id),
        )

    # records
    def put(self, record: Record) -> None:
        """Insert or replace one record (a retried error is replaced by its new result)."""
        self._write(_INSERT_RECORD, (*(getattr(record, f) for f in _RECORD_FIELDS), time.time()))

    def records(self, run_id: str) -> list[Record]:
        rows = self._db.execute(
            "SELECT * FROM records WHERE run_id = ? ORDER BY item_id, sample", (run_id,)
        ).fetchall()
        fields = Record.__dataclass_fields__
        return [Record(**{k: row[k] for k in fields}) for row in rows]

    def done(self, run_id: str) -> set[tuple[str, int]]:
        """(item, sample) pairs finished without error: a resumed run skips exactly these."""
        rows = self._db.execute(
            "SELECT item_id, sample FROM records WHERE run_id = ? AND error IS NULL"
            " AND score IS NOT NULL",
            (run_id,),
        ).fetchall()
        return {(r[0], r[1]) for r in rows}

    def last_error(self, run_id: str) -> str | None:
        """The most recent error recorded for the run (why its requests failed), if any."""
        row = self._db.execute(
            "SELECT error FROM records WHERE run_id = ? AND error IS NOT NULL"
            " ORDER BY created DESC LIMIT 1",
            (run_id,),
        ).fetchone()
        return None if row is None else str(row[0])

    # response cache
    def cached(self, key: str) -> Completion | None:
        row = self._db.execute("SELECT completion FROM cache WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return Completion.from_dict(json.loads(row[0]))

    def cache(self, key: str, completion: Completion) -> None:
        self._write(
            "INSERT OR REPLACE INTO cache VALUES (?, ?, ?)",
            (key, json.dumps(completion.to_dict(), ensure_ascii=False), time.time()),
        )


_RECORD_FIELDS = tuple(Record.__dataclass_fields__)
_INSERT_RECORD = (
    f"INSERT OR REPLACE INTO records ({', '.join(_RECORD_FIELDS)}, created)"
    f" VALUES ({', '.join('?' * len(_RECORD_FIELDS))}, ?)"
)


def _run_from_row(row: sqlite3.Row) -> RunInfo:
    return RunInfo(
        run_id=row["run_id"],
        model=row["model"],
        task=row["task"],
        settings=json.loads(row["settings"]),
        item_ids=json.loads(row["item_ids"]),
        source=row["source"],
        fixture=bool(row["fixture"]),
        metric=row["metric"],
        margin=row["margin"],
        status=_live_status(row["status"], row["owner"]),
        created=row["created"],
        updated=row["updated"],
    )


def _this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _live_status(status: str, owner: str | None) -> str:
    """A "running" run whose process on this host is gone was killed: "interrupted"."""
    if status != "running" or not owner:
        return status
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return status  # another machine's run: its process cannot be checked from here
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return "interrupted"
    except (PermissionError, ValueError):
        pass  # alive under another user, or a malformed owner
    return status
