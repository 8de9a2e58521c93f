"""A trend forecast as terminal text, JSON, or an HTML page with the gap-over-time plot."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from openparity import htmlpage
from openparity.forecast.trend import ANCHORED, FRONTIER, MeasuredGap, TrendForecast

NOTE = (
    "A straight line through the gaps; far from the data it is unbounded: read the"
    " probability and the interval, not the point forecast. Vendors' settings differ."
)


def fit_on(f: TrendForecast) -> str:
    """What the line is fit on, in one sentence: the first thing the user reads."""
    if f.basis == FRONTIER:
        first, last = f.points[0][0], f.points[-1][0]
        return (
            f"the published frontier gap on {f.benchmark} (best closed minus best open score,"
            f" {len(f.points)} points {first} to {last}): the best models, not yours"
        )
    latest = f.measured[-1]
    pair = f"{latest.open_model} vs {latest.closed_model}"
    if f.basis == ANCHORED:
        return (
            f"your measured gap on {f.benchmark}, {latest.gap:.1f} points on {latest.date}"
            f" ({pair}), carried forward at the published frontier's rate"
            f" ({f.slope_per_year:+.1f} points/year)"
        )
    return f"your {len(f.measured)} measured gaps on {f.benchmark}, {f.measured[0].date} to" + (
        f" {latest.date} (latest: {pair})"
    )


def notes(f: TrendForecast, today: dt.date | None = None) -> list[str]:
    today = today or dt.date.today()
    out = [NOTE]
    newest = max([d for d, _ in f.points] + [g.date for g in f.measured])
    years = (max(f.by, today) - newest).days / 365.25
    if years >= 1:
        out.append(
            f"The newest data point is from {newest}: the line runs {years:.1f} years past its"
            " data. Add newer scores (--add FILE.csv) or your own gap (--add-gap gap.json)."
        )
    if f.basis == FRONTIER:
        out.append(
            "This is the frontier, not your model: your own gap can be far wider. Add your"
            " measured gap with --add-gap gap.json (openparity gap --format json)."
        )
    elif f.basis == ANCHORED:
        out.append(
            "Assumes your gap closes at the frontier's rate. The interval adds the rate's"
            " uncertainty, the frontier's scatter and your measurement's own 95% CI; three"
            " gap reports on different dates fit your own rate instead."
        )
    return out


def to_dict(f: TrendForecast) -> dict[str, Any]:
    return {
        "benchmark": f.benchmark,
        "points": [{"date": d.isoformat(), "gap": g} for d, g in f.points],
        "slope_points_per_year": f.slope_per_year,
        "slope_ci95": list(f.slope_ci95),
        "by": f.by.isoformat(),
        "predicted_gap": f.predicted_gap,
        "prediction_interval95": list(f.prediction_interval95),
        "margin": f.margin,
        "probability_within_margin": f.probability_within_margin,
        "crossing_date": f.crossing_date.isoformat() if f.crossing_date else None,
        "basis": f.basis,
        "fit_on": fit_on(f),
        "measured": [_measured(g) for g in f.measured],
        "notes": notes(f),
    }


def _measured(g: MeasuredGap) -> dict[str, Any]:
    return {
        "date": g.date.isoformat(),
        "gap": g.gap,
        "ci95": list(g.ci95),
        "open_model": g.open_model,
        "closed_model": g.closed_model,
        "source": g.source,
    }


def to_json(f: TrendForecast) -> str:
    return json.dumps(to_dict(f), indent=2)


def summary(f: TrendForecast) -> list[dict[str, str]]:
    low, high = f.prediction_interval95
    return [
        {
            "benchmark": f.benchmark,
            "trend (points/year)": f"{f.slope_per_year:+.1f} [{f.slope_ci95[0]:+.1f},"
            f" {f.slope_ci95[1]:+.1f}]",
            f"gap on {f.by}": f"{f.predicted_gap:.1f} [{low:.1f}, {high:.1f}]",
            f"P(gap <= {f.margin:g})": f"{f.probability_within_margin:.2f}",
            "line reaches the margin": f.crossing_date.isoformat() if f.crossing_date else "never",
        }
    ]


def render_terminal(f: TrendForecast) -> None:
    from rich.markup import escape

    from openparity.console import out

    out.print(f"fit on: [bold]{escape(fit_on(f))}[/]")
    for d, g in f.points:
        out.print(f"{d.isoformat()}  frontier gap {g:6.1f} points")
    for g in f.measured:
        low, high = g.ci95
        out.print(f"{g.date.isoformat()}  your gap     {g.gap:6.1f} points [{low:.1f}, {high:.1f}]")
    for key, value in summary(f)[0].items():
        out.print(f"{escape(key)}: [bold]{escape(value)}[/]")
    for note in notes(f):
        out.print(f"[yellow]note:[/] {escape(note)}")


def _line_start(f: TrendForecast) -> dt.date:
    if f.basis == FRONTIER:
        return f.points[0][0]
    return f.measured[-1].date if f.basis == ANCHORED else f.measured[0].date


def to_html(f: TrendForecast) -> str:
    plt = htmlpage.pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    if f.points:
        ax.scatter(
            [d for d, _ in f.points],
            [g for _, g in f.points],
            zorder=3,
            label="published frontier gap",
        )
    if f.measured:
        ax.errorbar(
            [g.date for g in f.measured],
            [g.gap for g in f.measured],
            yerr=[[g.gap - g.ci95[0] for g in f.measured], [g.ci95[1] - g.gap for g in f.measured]],
            fmt="s",
            color="#d62728",
            capsize=3,
            zorder=4,
            label="your measured gap (95% CI)",
        )
    start = min(_line_start(f), f.by)
    ends = [start, max(f.by, _line_start(f))]
    ax.plot(
        ends,
        [f.predicted_gap + f.slope_per_year * (d - f.by).days / 365.25 for d in ends],
        label=f"linear trend ({f.basis})",
    )
    low, high = f.prediction_interval95
    ax.errorbar(
        [f.by],
        [f.predicted_gap],
        yerr=[[f.predicted_gap - low], [high - f.predicted_gap]],
        fmt="D",
        color="black",
        capsize=4,
        label=f"{f.by} (95% prediction)",
    )
    ax.axhline(f.margin, color="#2ca02c", linestyle="--", label=f"margin {f.margin:g}")
    ax.set_xlabel("date")
    fig.autofmt_xdate()
    ax.set_ylabel("closed - open (points)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.02), ncol=2, fontsize=8, frameon=False)
    plot = htmlpage.figure(htmlpage.svg(fig), f"Gap over time; fit on {fit_on(f)}.", "trend")
    points = [
        {"date": d.isoformat(), "gap (points)": f"{g:.1f}", "what": "published frontier"}
        for d, g in f.points
    ]
    points += [
        {
            "date": g.date.isoformat(),
            "gap (points)": f"{g.gap:.1f}",
            "what": f"yours: {g.open_model} vs {g.closed_model}",
        }
        for g in f.measured
    ]
    return htmlpage.page(
        f"openparity trend: {f.benchmark}",
        [
            ("Forecast", htmlpage.table(summary(f))),
            ("Gap over time", plot),
            ("Points", htmlpage.table(points)),
            ("Notes", htmlpage.bullet_list(notes(f))),
        ],
        created=dt.datetime.now(dt.UTC).timestamp(),
        lead=f"fit on {fit_on(f)}",
    )
