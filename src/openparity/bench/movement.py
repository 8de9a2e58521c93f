"""Before and after: what training moved. The trained model against its base on the same items
(paired, Holm-corrected across tasks as their own family), next to each one's gap to the closed
model or published target. Every task measured is also a regression guard: a significant drop
anywhere is called out."""

from __future__ import annotations

from dataclasses import dataclass, replace

from openparity.bench import stats
from openparity.bench.baselines import Published
from openparity.bench.comparison import (
    Comparison,
    PairedComparison,
    compare_runs,
    compare_to_reference,
)
from openparity.bench.store import RunStore

WORDS = {"open better": "improved", "open worse": "regressed", "equivalent": "unchanged"}


@dataclass(frozen=True)
class Movement:
    """One task: trained − base (paired), and the base's own gap to the reference (the gap
    after training is the report's comparison for the same task)."""

    change: PairedComparison  # open side: the trained model; closed side: its base
    before: Comparison | None  # the base against the closed model / target (None: no reference)

    @property
    def task(self) -> str:
        return self.change.task

    @property
    def verdict(self) -> str:
        """improved | regressed | unchanged (within the margin) | inconclusive"""
        return WORDS.get(self.change.verdict.word, self.change.verdict.word)


def measure_movement(
    store: RunStore,
    trained_run: str,
    base_run: str,
    closed_run: str | None = None,
    target: Published | None = None,
) -> Movement:
    """Trained vs base on their common items, and the base's gap to the same reference."""
    return Movement(
        compare_runs(store, trained_run, base_run),
        before=compare_to_reference(store, base_run, closed_run, target),
    )


def build_movements(movements: list[Movement]) -> list[Movement]:
    """Holm across the tasks' trained − base tests; verdicts re-derived from corrected p."""
    changes = [m.change for m in movements]
    p_diff = stats.holm([c.p_difference for c in changes])
    p_eq = stats.holm([c.p_equivalence for c in changes])
    final = []
    for m, pd, pe in zip(movements, p_diff, p_eq, strict=True):
        c = m.change
        v = stats.verdict(c.diff, pd, pe, c.margin, c.sd)
        final.append(
            replace(m, change=replace(c, p_difference_holm=pd, p_equivalence_holm=pe, verdict=v))
        )
    return final


def movement_notes(movements: list[Movement]) -> list[str]:
    """Regressions, and comparisons a reader should not over-read."""
    notes = []
    for m in movements:
        c = m.change
        if m.verdict == "regressed":
            notes.append(
                f"{m.task}: training cost {-c.diff.mean * 100:.1f} points"
                f" ({c.closed.run.model} → {c.open.run.model},"
                f" Holm p={c.p_difference_holm:.3g}): a regression."
            )
        backends = {_backend(c.open.run.model), _backend(c.closed.run.model)}
        if len(backends) > 1:
            notes.append(
                f"{m.task}: base and trained model ran on different backends"
                f" ({' and '.join(sorted(backends))}); part of the change may be the runtime or"
                " quantisation, not training. Compare hf:BASE with hf:CHECKPOINT, or both as GGUF."
            )
    return notes


def _backend(model: str) -> str:
    prefix, sep, _ = model.partition(":")
    return prefix if sep else model
