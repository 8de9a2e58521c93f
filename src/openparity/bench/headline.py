"""One sentence per task that a manager reads first: who is behind whom, by how much, and the
verdict; then one line of numbers behind it. Every report format leads with these."""

from __future__ import annotations

from dataclasses import dataclass

from openparity.bench.comparison import Comparison, PairedComparison, TargetComparison
from openparity.bench.movement import Movement


@dataclass(frozen=True)
class Headline:
    task: str
    verdict: str  # the verdict word, for styling: open worse | equivalent | improved | ...
    sentence: str  # "open model 58.5 points behind gpt-4o on mmlu: open worse"
    numbers: str  # "open 30.0 vs 88.5; difference −58.5 points (95% CI −62.1 to −54.9), n=200"


def reference_name(c: Comparison) -> str:
    """The closed side, named: the closed model, or whose published number it is."""
    if isinstance(c, PairedComparison):
        return c.closed.run.model
    if isinstance(c, TargetComparison):
        model = c.target.model
        return f"{model} (published score)" if model else "the published closed-model score"
    return "the reference"


def _points(value: float) -> str:
    return f"{value * 100:.1f}".replace("-", "−")


def _signed(value: float) -> str:
    return f"{value * 100:+.1f}".replace("-", "−")


def _relation(diff: float, subject: str, other: str, task: str) -> str:
    size = abs(diff) * 100
    if size < 0.05:
        return f"{subject} level with {other} on {task}"
    side = "behind" if diff < 0 else "ahead of"
    return f"{subject} {size:.1f} points {side} {other} on {task}"


def _interval(c: Comparison) -> str:
    d = c.diff
    return f"{_signed(d.mean)} points (95% CI {_signed(d.low)} to {_signed(d.high)})"


def for_comparison(c: Comparison) -> Headline:
    reference = reference_name(c)
    relation = _relation(c.diff.mean, "open model", reference, c.task)
    numbers = (
        f"open {_points(c.open_estimate.mean)} vs {_points(c.closed_mean)};"
        f" difference {_interval(c)}, n={c.diff.n}"
    )
    return Headline(c.task, c.verdict.word, f"{relation}: {c.verdict.word}", numbers)


def for_movement(m: Movement) -> Headline:
    c = m.change
    relation = _relation(c.diff.mean, "trained model", "its base", m.task)
    numbers = (
        f"trained {_points(c.open_estimate.mean)} vs base {_points(c.closed_mean)};"
        f" change {_interval(c)}, n={c.diff.n}"
    )
    return Headline(m.task, m.verdict, f"{relation}: {m.verdict}", numbers)


def headlines(comparisons: list[Comparison], movements: list[Movement]) -> list[Headline]:
    return [for_comparison(c) for c in comparisons] + [for_movement(m) for m in movements]
