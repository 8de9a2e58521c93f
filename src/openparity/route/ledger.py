"""The gateway's ledger: one SQLite (WAL) row per request and one per attempt, with tokens,
cost, latency, outcome and check reasons; failed attempts are costed too.

Rows are written by one background thread in batches (one transaction each), so a request
never waits on the disk. A batch that fails (disk full) is kept and retried, and one line
says why; `close()` drains everything. A kill -9 loses at most the last batch interval.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from openparity.route.outcome import RouteResult

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
"""


def connect(path: Path) -> sqlite3.Connection:
    """The ledger database (created with its schema), WAL mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    return db


class Ledger:
    """Append-only request log; `record()` never blocks on SQLite."""

    def __init__(self, path: Path, *, store_prompts: bool = False, flush_s: float = 0.05):
        self.path = Path(path)
        self.store_prompts = store_prompts
        self._flush_s = flush_s
        self._queue: queue.SimpleQueue[tuple[tuple[Any, ...], list[tuple[Any, ...]]] | None] = (
            queue.SimpleQueue()
        )
        self._db = connect(self.path)
        self._pending = 0
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._write_loop, name="ledger", daemon=True)
        self._thread.start()

    def record(self, result: RouteResult, *, status: int, key_id: str | None = None) -> None:
        completion = result.completion
        request_row = (
            result.request_id,
            result.created,
            key_id,
            int(result.stream),
            status,
            result.route,
            result.answered_by,
            result.tier,
            completion.prompt_tokens if completion else None,
            completion.completion_tokens if completion else None,
            result.cost_usd,
            result.closed_cost_usd,
            result.latency_s,
            result.error,
            json.dumps(list(result.request.messages), ensure_ascii=False)
            if self.store_prompts
            else None,
            completion.text if completion and self.store_prompts else None,
        )
        attempt_rows = [
            (
                result.request_id, n, a.tier, a.model, a.outcome, a.reason, a.detail,
                a.prompt_tokens, a.completion_tokens, a.cost_usd, a.latency_s,
                json.dumps([c.to_dict() for c in a.checks], ensure_ascii=False),
            )
            for n, a in enumerate(result.attempts)
        ]  # fmt: skip
        with self._idle:
            self._pending += 1
        self._queue.put((request_row, attempt_rows))

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every recorded request is on disk."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._pending and time.monotonic() < deadline:
                self._idle.wait(0.05)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(30)
        self._db.close()

    def _write_loop(self) -> None:
        batch: list[tuple[tuple[Any, ...], list[tuple[Any, ...]]]] = []
        stopping = False
        while not stopping or batch:
            if not stopping:
                try:
                    item = self._queue.get(timeout=self._flush_s if batch else None)
                    if item is None:
                        stopping = True
                    else:
                        batch.append(item)
                        while len(batch) < 1000:
                            more = self._queue.get_nowait()
                            if more is None:
                                stopping = True
                                break
                            batch.append(more)
                except queue.Empty:
                    pass
            if batch and self._write(batch):
                with self._idle:
                    self._pending -= len(batch)
                    self._idle.notify_all()
                batch = []
            elif batch and stopping:
                return  # the disk still refuses: nothing more can be done at shutdown

    def _write(self, batch: list[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]) -> bool:
        try:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO requests VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [request for request, _ in batch],
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO attempts VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    [row for _, rows in batch for row in rows],
                )
            return True
        except sqlite3.Error as exc:
            print(
                f"error: the ledger {self.path} cannot be written ({exc}); {len(batch)} requests"
                " are kept in memory and retried: free disk space or fix the path",
                file=sys.stderr,
            )
            time.sleep(1.0)
            return False
