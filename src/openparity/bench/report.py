"""The gap report's rows (gap, verification, what training moved, the runs) and its JSON form.
Each other format renders these rows in its own module: `report_terminal` (Rich),
`report_markdown` and `report_html`."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

from openparity import __version__
from openparity.bench.comparison import Comparison, PairedComparison, TargetComparison
from openparity.bench.gap_report import GapReport


def _pts(value: float | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * 100:+.1f}" if signed else f"{value * 100:.1f}"


def _ci(low: float, high: float) -> str:
    return f"[{_pts(low)}, {_pts(high)}]"


def gap_rows(report: GapReport) -> list[dict[str, str]]:
    rows = []
    for c in report.comparisons:
        closed = c.closed_interval
        rows.append(
            {
                "task": c.task + (" (fixture)" if c.fixture else ""),
                "metric": c.metric,
                "closed": _pts(c.closed_mean)
                + (f" {_ci(closed.low, closed.high)}" if closed else ""),
                "open": _pts(c.open_estimate.mean)
                + f" {_ci(c.open_estimate.low, c.open_estimate.high)}",
                "gap ratio": "-" if math.isnan(c.gap_ratio) else f"{c.gap_ratio * 100:.1f}%",
                "n": str(c.diff.n),
            }
        )
    return rows


def verification_rows(report: GapReport) -> list[dict[str, str]]:
    rows = []
    for c in report.comparisons:
        rows.append(
            {
                "task": c.task,
                "target": _pts(c.closed_mean),
                "margin": f"±{c.margin * 100:.1f}",
                "diff [95% CI]": f"{_pts(c.diff.mean, True)} {_ci(c.diff.low, c.diff.high)}",
                "p diff": f"{_first(c.p_difference_holm, c.p_difference):.3g}",
                "p TOST": f"{_first(c.p_equivalence_holm, c.p_equivalence):.3g}",
                "provable": f"±{c.provable * 100:.1f}",
                "verdict": c.verdict.word,
                "why": c.verdict.explanation,
            }
        )
    return rows


def movement_rows(report: GapReport) -> list[dict[str, str]]:
    """Trained against base on the same items, and the gap to the reference before → after."""
    after = {c.task: c for c in report.comparisons}
    rows = []
    for m in report.movements:
        c = m.change
        gap_after = after[m.task].gap_ratio if m.task in after else math.nan
        gaps = (m.before.gap_ratio if m.before else math.nan, gap_after)
        rows.append(
            {
                "task": m.task,
                "base": f"{_pts(c.closed_estimate.mean)}"
                f" {_ci(c.closed_estimate.low, c.closed_estimate.high)}",
                "trained": f"{_pts(c.open_estimate.mean)}"
                f" {_ci(c.open_estimate.low, c.open_estimate.high)}",
                "change [95% CI]": f"{_pts(c.diff.mean, True)} {_ci(c.diff.low, c.diff.high)}",
                "gap ratio before → after": " → ".join(
                    "-" if math.isnan(g) else f"{g * 100:.1f}%" for g in gaps
                ),
                "verdict": m.verdict,
                "p (Holm)": f"{_first(c.p_difference_holm, c.p_difference):.3g}",
                "n": str(c.diff.n),
                "why": c.verdict.explanation,
            }
        )
    return rows


def _first(*values: float | None) -> float:
    return next(v for v in values if v is not None)


def run_rows(report: GapReport) -> list[dict[str, str]]:
    """Which model ran what, on which data: the provenance of every number above."""
    rows = []
    for c in report.comparisons:
        rows.append(_run_row(c.task, "open", c.open))
        if isinstance(c, PairedComparison):
            rows.append(_run_row(c.task, "closed", c.closed))
        if isinstance(c, TargetComparison):
            rows.append(
                {
                    "task": c.task,
                    "side": "closed (published, unpaired)",
                    "model": c.target.model or "not named by the source",
                    "run": "-",
                    "data": c.target.provenance(),
                    "settings": c.target.shots or "-",
                }
            )
    compared = {c.task for c in report.comparisons}
    for m in report.movements:
        if m.task not in compared:  # no reference: the trained run is listed here
            rows.append(_run_row(m.task, "open (trained)", m.change.open))
        rows.append(_run_row(m.task, "base", m.change.closed))
    return rows


def _run_row(task: str, side: str, scores) -> dict[str, str]:
    return {
        "task": task,
        "side": side,
        "model": scores.run.model,
        "run": scores.run.run_id,
        "data": scores.run.source,
        "settings": ", ".join(f"{k}={v}" for k, v in scores.run.settings.items() if k != "command"),
    }


def to_dict(report: GapReport) -> dict[str, Any]:
    def estimate(e):
        return (
            None
            if e is None
            else {
                "mean": e.mean,
                "se": e.se,
                "ci95": [e.low, e.high],
                "n": e.n,
                "clusters": e.clusters,
                "df": e.df,
                "method": e.method,
            }
        )

    return {
        "openparity": __version__,
        "created": dt.datetime.fromtimestamp(report.created, dt.UTC).isoformat(),
        "notes": report.notes,
        "training": [
            {
                "task": m.task,
                "verdict": m.verdict,
                "why": m.change.verdict.explanation,
                "base": {
                    "model": m.change.closed.run.model,
                    "run_id": m.change.closed.run.run_id,
                    **estimate(m.change.closed_estimate),
                },
                "trained": {
                    "model": m.change.open.run.model,
                    "run_id": m.change.open.run.run_id,
                    **estimate(m.change.open_estimate),
                },
                "change": estimate(m.change.diff),
                "p_difference": m.change.p_difference,
                "p_difference_holm": m.change.p_difference_holm,
                "p_equivalence_holm": m.change.p_equivalence_holm,
                "gap_ratio_before": _number(m.before.gap_ratio) if m.before else None,
            }
            for m in report.movements
        ],
        "tasks": [
            {
                "task": c.task,
                "metric": c.metric,
                "margin": c.margin,
                "fixture": c.fixture,
                "open": {
                    "model": c.open.run.model,
                    "run_id": c.open.run.run_id,
                    "source": c.open.run.source,
                    **estimate(c.open_estimate),
                    "errors": c.open.errors,
                    "unscored": c.open.missing,
                    "pass_at_k": c.open.pass_at_k() or None,
                },
                "closed": _closed(c, estimate),
                "target": _target(c, estimate),
                "gap_ratio": None if math.isnan(c.gap_ratio) else c.gap_ratio,
                "paired": isinstance(c, PairedComparison),
                "method": c.method,
                "difference": estimate(c.diff),
                "equivalence_ci90": _interval(c.equivalence_interval),
                "p_difference": c.p_difference,
                "p_difference_holm": c.p_difference_holm,
                "p_equivalence": c.p_equivalence,
                "p_equivalence_holm": c.p_equivalence_holm,
                "detectable_difference": c.detectable,
                "provable_margin": c.provable,
                "verdict": c.verdict.word,
                "why": c.verdict.explanation,
            }
            for c in report.comparisons
        ],
    }


def _interval(e: Any) -> list[float | None] | None:
    """The (1 - 2 alpha) interval the TOST inverts, as [low, high]."""
    return None if e is None else [_number(e.low), _number(e.high)]


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def _closed(c: Comparison, estimate) -> dict[str, Any] | None:
    if not isinstance(c, PairedComparison):
        return None
    return {
        "model": c.closed.run.model,
        "run_id": c.closed.run.run_id,
        **estimate(c.closed_estimate),
        "errors": c.closed.errors,
        "pass_at_k": c.closed.pass_at_k() or None,
    }


def _target(c: Comparison, estimate) -> dict[str, Any] | None:
    if not isinstance(c, TargetComparison):
        return None
    t = c.target
    return {
        "score": t.score,
        "source": t.source,
        "n": t.n,
        "model": t.model,
        "date": t.date,
        "shots": t.shots,
        "protocol": t.protocol,
        "url": t.url,
        "provenance": t.provenance(),
        "interval": estimate(c.target_estimate),
        "comparison": "unpaired, against a published number",
    }


def to_json(report: GapReport) -> str:
    return json.dumps(to_dict(report), indent=2, ensure_ascii=False)
