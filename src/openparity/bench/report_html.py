"""The gap report as one self-contained HTML page a manager reads at a glance: a headline per
task with its verdict, the two plots, and only then the statistics and the runs behind them."""

from __future__ import annotations

import html
from typing import Any

from openparity import htmlpage
from openparity.bench.comparison import Comparison, TargetComparison
from openparity.bench.gap_report import GapReport
from openparity.bench.headline import Headline, headlines, reference_name
from openparity.bench.report import gap_rows, movement_rows, run_rows, verification_rows

OPEN_COLOR = "#1f77b4"
CLOSED_COLOR = "#d62728"
_TONE = {
    "open worse": "bad",
    "regressed": "bad",
    "equivalent": "good",
    "unchanged": "good",
    "open better": "good",
    "improved": "good",
}


MARGIN_FILL = "#cae7ca"  # the margin's green at alpha 0.25 on white, as the page shows it
_WIDTH = 5.6  # inches: two plots side by side in the page's 72rem


def _height(rows: int) -> float:
    return 1.2 + 0.55 * rows


def _task_axis(ax: Any, comparisons: list[Comparison]) -> None:
    """Tasks top to bottom in the headlines' order."""
    ax.set_yticks(range(len(comparisons)), [c.task for c in comparisons])
    ax.set_ylim(len(comparisons) - 0.4, -0.6)


def _legend_above(ax: Any, columns: int) -> None:
    """Above the axes, so it never meets the tick labels or the axis label however few rows."""
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.02), ncol=columns, frameon=False)


def score_figure(comparisons: list[Comparison]) -> Any:
    """Open and closed scores per task with their 95% intervals, on one 0-100 axis."""
    plt = htmlpage.pyplot()
    fig, ax = plt.subplots(figsize=(_WIDTH, _height(len(comparisons))))
    ys = range(len(comparisons))
    opened = [c.open_estimate for c in comparisons]
    ax.errorbar(
        [e.mean * 100 for e in opened],
        [y - 0.15 for y in ys],
        xerr=[[(e.mean - e.low) * 100 for e in opened], [(e.high - e.mean) * 100 for e in opened]],
        fmt="o",
        color=OPEN_COLOR,
        label="open model",
        capsize=3,
    )
    low = [
        (c.closed_mean - c.closed_interval.low) * 100 if c.closed_interval else 0
        for c in comparisons
    ]
    high = [
        (c.closed_interval.high - c.closed_mean) * 100 if c.closed_interval else 0
        for c in comparisons
    ]
    ax.errorbar(
        [c.closed_mean * 100 for c in comparisons],
        [y + 0.15 for y in ys],
        xerr=[low, high],
        fmt="s",
        color=CLOSED_COLOR,
        label="closed model / published score",
        capsize=3,
    )
    _task_axis(ax, comparisons)
    ax.set_xlabel("score (points) with 95% CI")
    ax.set_xlim(0, 100)
    _legend_above(ax, 2)
    return fig


def difference_figure(comparisons: list[Comparison]) -> Any:
    """Open − closed per task with its 95% interval, over the equivalence margin."""
    plt = htmlpage.pyplot()
    fig, ax = plt.subplots(figsize=(_WIDTH, _height(len(comparisons))))
    for y, c in enumerate(comparisons):
        ax.fill_betweenx(
            [y - 0.35, y + 0.35],
            -c.margin * 100,
            c.margin * 100,
            color="#2ca02c",
            alpha=0.25,
            label="equivalence margin" if y == 0 else None,
        )
        ax.errorbar(
            [c.diff.mean * 100],
            [y],
            xerr=[[(c.diff.mean - c.diff.low) * 100], [(c.diff.high - c.diff.mean) * 100]],
            fmt="D",
            color="black",
            capsize=4,
            label="open − closed" if y == 0 else None,
        )
    ax.axvline(0, color="grey", linewidth=0.8)
    _task_axis(ax, comparisons)
    ax.set_xlabel("open − closed (points), 95% CI")
    _legend_above(ax, 2)
    return fig


def _callout(h: Headline, why: str) -> str:
    tone = _TONE.get(h.verdict, "unsure")
    return (
        f'<div class="callout {tone}"><p class="sentence">{html.escape(h.sentence)}</p>'
        f'<p class="numbers">{html.escape(h.numbers)}</p>'
        f'<p class="why">{html.escape(why)}</p></div>'
    )


def _glance(report: GapReport) -> str:
    whys = [c.verdict.explanation for c in report.comparisons]
    whys += [m.change.verdict.explanation for m in report.movements]
    lines = headlines(report.comparisons, report.movements)
    return "".join(_callout(h, why) for h, why in zip(lines, whys, strict=True))


def _sides(report: GapReport) -> str:
    opened = sorted({c.open.run.model for c in report.comparisons})
    closed = sorted({_closed_side(c) for c in report.comparisons})
    if not opened:
        return ""
    return f"open: {', '.join(opened)} · closed: {', '.join(closed)}"


def _closed_side(c: Comparison) -> str:
    """The closed side for the page's lead line: a published number says whose it is."""
    if isinstance(c, TargetComparison):
        return f"{reference_name(c)}, from {c.target.source}"
    return reference_name(c)


def _plots(report: GapReport) -> str:
    if not report.comparisons:
        return ""
    scores = htmlpage.svg(score_figure(report.comparisons))
    difference = htmlpage.svg(difference_figure(report.comparisons))
    return (
        '<div class="figures">'
        + htmlpage.figure(scores, "Scores per task with 95% CIs.", "scores")
        + htmlpage.figure(difference, "Open − closed with 95% CI; green: the margin.", "forest")
        + "</div>"
    )


def to_html(report: GapReport) -> str:
    """One self-contained page (inline CSS and SVG, no scripts, no network)."""
    sections = [("At a glance", _glance(report) + _plots(report))]
    sections += [
        ("Gap", htmlpage.table(gap_rows(report), "no tasks")),
        ("Statistics", htmlpage.table(verification_rows(report), "no tasks")),
    ]
    if report.movements:
        sections.append(("What training moved", htmlpage.table(movement_rows(report))))
    sections += [
        ("Notes", htmlpage.bullet_list(report.notes)),
        ("Runs", htmlpage.table(run_rows(report), "no runs")),
    ]
    return htmlpage.page(
        "openparity gap report", sections, created=report.created, lead=_sides(report)
    )
