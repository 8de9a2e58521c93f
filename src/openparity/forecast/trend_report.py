"""A trend forecast as terminal text, JSON, or an HTML page with the gap-over-time plot."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from openparity import htmlpage
from openparity.forecast.trend import TrendForecast

NOTE = (
    "A straight line through the frontier gaps; far from the data it is unbounded: read the"
    " probability and the interval, not the point forecast. Vendors' settings differ."
)


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
        "note": NOTE,
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

    for d, g in f.points:
        out.print(f"{d.isoformat()}  frontier gap {g:6.1f} points")
    for key, value in summary(f)[0].items():
        out.print(f"{escape(key)}: [bold]{escape(value)}[/]")
    out.print(f"[yellow]note:[/] {escape(NOTE)}")


def to_html(f: TrendForecast) -> str:
    import numpy as np

    plt = htmlpage.pyplot()
    dates = [d for d, _ in f.points]
    origin = dates[0]
    years = np.array([(d - origin).days / 365.25 for d in dates])
    gaps = np.array([g for _, g in f.points])
    end = (f.by - origin).days / 365.25
    line_x = np.linspace(0, max(end, years[-1]), 50)
    intercept = f.predicted_gap - f.slope_per_year * end
    line_dates = [origin + dt.timedelta(days=float(x) * 365.25) for x in line_x]
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.scatter(dates, gaps, label="frontier gap", zorder=3)
    ax.plot(line_dates, intercept + f.slope_per_year * line_x, label="linear trend")
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
    ax.legend(loc="upper right", fontsize=8)
    plot = htmlpage.figure(htmlpage.svg(fig), "Frontier gap over time.", "trend")
    points = [{"date": d.isoformat(), "gap (points)": f"{g:.1f}"} for d, g in f.points]
    return htmlpage.page(
        f"openparity trend: {f.benchmark}",
        [
            ("Forecast", htmlpage.table(summary(f))),
            ("Gap over time", plot),
            ("Points", htmlpage.table(points)),
            ("Notes", htmlpage.bullet_list([NOTE])),
        ],
        created=dt.datetime.now(dt.UTC).timestamp(),
    )
