"""What the ledger says: open share, fallback reasons, cost against sending everything to the
closed (last) tier. `openparity route stats`; `openparity cost --open-share` can take the share."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openparity.errors import OpenparityError
from openparity.route.ledger_db import (
    LedgerDB,
    LedgerStoreError,
    LedgerTarget,
    describe,
    is_postgres,
)


@dataclass(frozen=True)
class LedgerStats:
    path: str
    requests: int
    answered: int
    failed: int
    broken_streams: int
    by_model: dict[str, int]
    open_share: float  # of answered requests, the share the first tier answered
    fallback_reasons: dict[str, int]  # attempt reason -> count (failed / skipped attempts)
    cost_usd: float  # every attempt, failed ones included
    closed_cost_usd: float  # estimate: each answer priced at the last tier's rates
    latency_p50_s: float | None
    latency_p99_s: float | None
    since: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def saving_share(self) -> float | None:
        if not self.closed_cost_usd:
            return None
        return 1 - self.cost_usd / self.closed_cost_usd

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"saving_share": self.saving_share}


def ledger_stats(target: LedgerTarget, *, since: float | None = None) -> LedgerStats:
    """Summarise the ledger (a SQLite file or a postgresql:// URL); requests created at or
    after `since`, if given."""
    if not is_postgres(target) and not Path(target).is_file():
        raise OpenparityError(
            f"no gateway ledger at {target}", hint="run openparity serve first, or pass --ledger"
        )
    try:
        db = LedgerDB(target, read_only=True)
    except LedgerStoreError as exc:
        raise OpenparityError(
            f"{describe(target)} is not a readable gateway ledger ({exc})"
        ) from None
    try:
        where, args = ("WHERE created >= ?", (since,)) if since is not None else ("", ())
        rows = db.query(
            f"SELECT request_id, route, answered_by, tier, cost_usd, closed_cost_usd, latency_s"
            f" FROM requests {where}",
            args,
        )
        reasons = db.query(
            "SELECT a.reason, COUNT(*) FROM attempts a JOIN requests r USING (request_id)"
            f" {where.replace('created', 'r.created')} {'AND' if where else 'WHERE'}"
            " a.outcome NOT IN ('ok', 'cancelled') GROUP BY a.reason ORDER BY 2 DESC",
            args,
        )
    except LedgerStoreError as exc:
        raise OpenparityError(
            f"{describe(target)} is not a readable gateway ledger ({exc})"
        ) from None
    finally:
        db.close()
    answered = [r for r in rows if r[3] is not None and r[1] not in ("failed", "broken")]
    latencies = np.array([r[6] for r in rows], dtype=float)
    notes = []
    if any(r[5] is None for r in answered):
        notes.append("the last tier has no price: cost against all-closed is incomplete")
    return LedgerStats(
        path=describe(target),
        requests=len(rows),
        answered=len(answered),
        failed=sum(r[1] == "failed" for r in rows),
        broken_streams=sum(r[1] == "broken" for r in rows),
        by_model=dict(Counter(r[2] for r in answered)),
        open_share=sum(r[3] == 0 for r in answered) / len(answered) if answered else 0.0,
        fallback_reasons=dict(reasons),
        cost_usd=float(sum(r[4] for r in rows)),
        closed_cost_usd=float(sum(r[5] or 0.0 for r in answered)),
        latency_p50_s=float(np.percentile(latencies, 50)) if len(rows) else None,
        latency_p99_s=float(np.percentile(latencies, 99)) if len(rows) else None,
        since=since,
        notes=notes,
    )


def render(stats: LedgerStats) -> None:
    from rich.table import Table

    from openparity.console import out

    out.print(f"[bold]gateway ledger[/] {stats.path}")
    out.print(
        f"{stats.requests} requests: {stats.answered} answered, {stats.failed} failed,"
        f" {stats.broken_streams} streams broken after commit"
    )
    out.print(f"open share (first tier answered): [bold]{stats.open_share:.1%}[/]")
    table = Table("answered by", "requests")
    for model, count in sorted(stats.by_model.items(), key=lambda kv: -kv[1]):
        table.add_row(model, str(count))
    out.print(table)
    if stats.fallback_reasons:
        reasons = Table("fallback reason", "attempts")
        for reason, count in stats.fallback_reasons.items():
            reasons.add_row(reason, str(count))
        out.print(reasons)
    saving = stats.saving_share
    out.print(
        f"cost ${stats.cost_usd:.6f} (failed attempts included) vs ${stats.closed_cost_usd:.6f}"
        " all-closed (estimate)" + (f": saving {saving:.1%}" if saving is not None else "")
    )
    if stats.latency_p50_s is not None:
        p50, p99 = stats.latency_p50_s * 1000, (stats.latency_p99_s or 0.0) * 1000
        out.print(f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    for note in stats.notes:
        out.print(f"note: {note}")
