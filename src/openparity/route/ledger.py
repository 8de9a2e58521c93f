"""The gateway's ledger: one row per request and one per attempt, with tokens, cost, latency,
outcome and check reasons; failed attempts are costed too. A SQLite file (WAL) by default, or
PostgreSQL (`ledger.url`) for several replicas: the same rows, the same guarantees.

Rows are written by one background thread in batches (one transaction each), so a request
never waits on the disk. A batch that fails (disk full) is kept and retried, and one line
says why; `close()` drains everything. A kill -9 loses at most the last batch interval.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

from openparity.route.ledger_db import LedgerDB, LedgerStoreError, LedgerTarget, describe
from openparity.route.outcome import RouteResult


class Ledger:
    """Append-only request log; `record()` never blocks on the database."""

    def __init__(
        self, target: LedgerTarget, *, store_prompts: bool = False, flush_s: float = 0.05
    ) -> None:
        self.target = target if isinstance(target, str) else Path(target)
        self.store_prompts = store_prompts
        self._flush_s = flush_s
        self._queue: queue.SimpleQueue[tuple[tuple[Any, ...], list[tuple[Any, ...]]] | None] = (
            queue.SimpleQueue()
        )
        self._db: LedgerDB | None = LedgerDB(self.target)
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
                result.request_id,
                n,
                a.tier,
                a.model,
                a.outcome,
                a.reason,
                a.detail,
                a.prompt_tokens,
                a.completion_tokens,
                a.cost_usd,
                a.latency_s,
                json.dumps([c.to_dict() for c in a.checks], ensure_ascii=False),
            )
            for n, a in enumerate(result.attempts)
        ]
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
        if self._db is not None:
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
                        if len(batch) == 1:  # let the interval's requests gather: one
                            time.sleep(self._flush_s)  # wake-up and transaction, not one each
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
            if self._db is None:  # a lost server connection: open a new one
                self._db = LedgerDB(self.target)
            with self._db.transaction():
                self._db.insert("requests", [request for request, _ in batch])
                self._db.insert("attempts", [row for _, rows in batch for row in rows])
            return True
        except LedgerStoreError as exc:
            where = describe(self.target)
            print(
                f"error: the ledger {where} cannot be written ({exc.message}); {len(batch)}"
                " requests are kept in memory and retried: free disk space, fix the path or"
                " bring the database back",
                file=sys.stderr,
            )
            if self._db is not None and self._db.postgres:
                with contextlib.suppress(Exception):
                    self._db.close()
                self._db = None
            time.sleep(1.0)
            return False
