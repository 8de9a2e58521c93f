"""The gap report: every task's comparison with Holm's correction across tasks, the notes a
reader must see beside the numbers, and what training moved (trained vs base) as a family of
its own. Above `compare` (one comparison) and `movement` (one trained-vs-base change)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from openparity.bench import stats
from openparity.bench.comparison import (
    Comparison,
    PairedComparison,
    TargetComparison,
    rederived_verdict,
)
from openparity.bench.movement import Movement, build_movements, movement_notes


@dataclass(frozen=True)
class GapReport:
    comparisons: list[Comparison]
    created: float = field(default_factory=time.time)
    notes: list[str] = field(default_factory=list)
    movements: list[Movement] = field(default_factory=list)  # trained vs base, when given


def build_report(
    comparisons: list[Comparison],
    notes: list[str] | None = None,
    movements: list[Movement] | None = None,
) -> GapReport:
    """Apply Holm's correction across tasks, to the difference tests and to the equivalence
    claims alike, and re-derive each verdict with the corrected p-values. `movements` (trained
    vs base) are corrected as a family of their own."""
    p_diff = stats.holm([c.p_difference for c in comparisons])
    p_eq = stats.holm([c.p_equivalence for c in comparisons])
    final = []
    for c, pd, pe in zip(comparisons, p_diff, p_eq, strict=True):
        v = rederived_verdict(
            c.diff,
            pd,
            pe,
            c.margin,
            c.sd,
            c.equivalence_interval,
            c.exact_target,
            c.fixed_var,
            c.open.run.settings.get("task_items"),
        )
        final.append(replace(c, p_difference_holm=pd, p_equivalence_holm=pe, verdict=v))
    notes = list(notes or [])
    for c in final:
        notes.extend(_method_notes(c))
        closed = c.closed if isinstance(c, PairedComparison) else None
        for side, scores in (("open", c.open), ("closed", closed)):
            pass_k = scores.pass_at_k() if scores else {}
            if len(pass_k) > 1:
                n = min(n for n, _ in scores.samples.values())
                listed = ", ".join(f"pass@{k} {v * 100:.1f}" for k, v in pass_k.items())
                notes.append(
                    f"{c.task}: {side} ({scores.run.model}), {n} samples per item: {listed}"
                )
        if "log-likelihood" in c.open.run.metric or (
            closed and "log-likelihood" in closed.run.metric
        ):
            notes.append(
                f"{c.task}: scored by log-likelihood of the choices; not comparable with"
                " generative scores (closed chat APIs cannot be scored this way)."
            )
        if c.fixture:
            notes.append(f"{c.task}: ran on a small fixture, not the real benchmark data.")
        for side, scores in (("open", c.open), ("closed", closed)):
            if scores and scores.in_answer_process:
                notes.append(
                    f"{c.task}: {scores.in_answer_process} {side} items had their tests run in"
                    " the answer's own process (their tests build the answer's objects); a"
                    " program can forge a pass there, unlike on the other items."
                )
        if c.open.errors or c.open.missing:
            notes.append(
                f"{c.task}: {c.open.missing} of {len(c.open.scores) + c.open.missing}"
                " items unscored"
                f" ({c.open.errors} errors) in {c.open.run.run_id}; excluded, not counted wrong."
            )
        if c.provable > c.margin:
            notes.append(
                f"{c.task}: with n={c.diff.n} the smallest provable margin is"
                f" ±{c.provable * 100:.1f} points; the ±{c.margin * 100:.1f} margin cannot be"
                " proven at this size (80% power)."
            )
    if movements:
        movements = build_movements(movements)
        notes.extend(movement_notes(movements))
    return GapReport(final, notes=notes, movements=list(movements or []))


FEW_CLUSTERS = 10


def _method_notes(c: Comparison) -> list[str]:
    """What a reader must know about how this comparison was made."""
    notes = []
    if isinstance(c, TargetComparison):
        t = c.target
        sampling = (
            f"its sampling error on n={t.n} is included"
            if t.n
            else "its n is unknown, so it is treated as exact (its own error is ignored)"
        )
        notes.append(
            f"{c.task}: unpaired, against a published number: {t.provenance()}; {sampling}."
        )
    g = c.diff.clusters
    if g is not None and g < FEW_CLUSTERS:
        floor = 2 / 2**g  # the smallest two-sided p a sign-flip test over g clusters can give
        notes.append(
            f"{c.task}: only {g} clusters of items sharing a context: the difference is tested"
            f" by flipping whole clusters' signs, whose smallest p-value here is {floor:.3g},"
            " so intervals are wide; more clusters (not more items per cluster) narrow them."
        )
    return notes
