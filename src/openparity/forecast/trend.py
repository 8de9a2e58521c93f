"""Trend forecast from dated benchmark scores: the open-vs-closed frontier gap over time, a
linear fit with its uncertainty, and the probability that the gap is within a margin by a date.

The frontier gap at a date is the best closed score so far minus the best open score so far;
a point is kept each time either frontier moves. Vendors report with different settings
(shots, CoT), so treat the trend as indicative and add measured rows of your own.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path

from openparity.errors import OpenparityError

PUBLIC_SCORES = Path(__file__).parent / "data" / "public_scores.csv"
COLUMNS = ("model", "kind", "date", "benchmark", "score", "source")


class TrendError(OpenparityError):
    """Scores are missing, malformed or too few for a trend."""


@dataclass(frozen=True)
class ScoreRow:
    model: str
    kind: str  # "open" | "closed"
    date: dt.date
    benchmark: str
    score: float  # points, 0-100
    source: str


@dataclass(frozen=True)
class TrendForecast:
    benchmark: str
    points: list[tuple[dt.date, float]]  # (date, frontier gap in points)
    slope_per_year: float
    slope_ci95: tuple[float, float]
    by: dt.date
    predicted_gap: float
    prediction_interval95: tuple[float, float]
    margin: float
    probability_within_margin: float
    crossing_date: dt.date | None  # where the fitted line reaches the margin (None: never)


def read_scores(path: Path) -> list[ScoreRow]:
    rows = []
    try:
        with Path(path).open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise TrendError(f"{path} lacks the column(s) {', '.join(missing)}")
            for number, r in enumerate(reader, 2):
                rows.append(_row(path, number, r))
    except FileNotFoundError:
        raise TrendError(f"scores file not found: {path}") from None
    return rows


def _row(path: Path, number: int, r: dict[str, str]) -> ScoreRow:
    where = f"{path}:{number}"
    if r["kind"] not in ("open", "closed"):
        raise TrendError(f"{where}: kind must be open or closed, not {r['kind']!r}")
    try:
        date = dt.date.fromisoformat(r["date"])
    except ValueError:
        raise TrendError(f"{where}: date {r['date']!r} is not YYYY-MM-DD") from None
    try:
        score = float(r["score"])
    except ValueError:
        raise TrendError(f"{where}: score {r['score']!r} is not a number") from None
    if not 0 <= score <= 100:
        raise TrendError(f"{where}: score {score} is not in 0-100 points")
    return ScoreRow(r["model"], r["kind"], date, r["benchmark"].strip().lower(), score, r["source"])


def rows_from_gap_report(path: Path) -> list[ScoreRow]:
    """Open and closed-run scores of an `openparity gap --format json` report (published
    targets are not model runs and are left out)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        date = dt.date.fromisoformat(data["created"][:10])
        rows = []
        for t in data["tasks"]:
            if t.get("fixture"):
                continue  # fixture runs say nothing about the real benchmark
            for kind in ("open", "closed"):
                side = t.get(kind)
                if side:  # a report against a published target has no closed run
                    rows.append(
                        ScoreRow(
                            side["model"],
                            kind,
                            date,
                            t["task"],
                            side["mean"] * 100,
                            f"openparity gap {path}",
                        )
                    )
        return rows
    except FileNotFoundError:
        raise TrendError(f"gap report not found: {path}") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise TrendError(f"{path} is not a gap report (openparity gap --format json)") from None


def frontier_gaps(rows: list[ScoreRow], benchmark: str) -> list[tuple[dt.date, float]]:
    best = {"open": -math.inf, "closed": -math.inf}
    points: list[tuple[dt.date, float]] = []
    for row in sorted((r for r in rows if r.benchmark == benchmark), key=lambda r: r.date):
        if row.score <= best[row.kind]:
            continue  # the frontier did not move
        best[row.kind] = row.score
        if best["open"] > -math.inf and best["closed"] > -math.inf:
            gap = best["closed"] - best["open"]
            if points and points[-1][0] == row.date:
                points[-1] = (row.date, gap)
            else:
                points.append((row.date, gap))
    return points


def forecast_trend(
    rows: list[ScoreRow], benchmark: str, by: dt.date, margin: float
) -> TrendForecast:
    import numpy as np
    import statsmodels.api as sm
    from scipy import stats

    points = frontier_gaps(rows, benchmark)
    if len(points) < 3:
        raise TrendError(
            f"{benchmark}: {len(points)} frontier points; a trend needs at least 3",
            hint="add dated open and closed scores for this benchmark (--add FILE.csv)",
        )
    origin = points[0][0]
    years = np.array([(d - origin).days / 365.25 for d, _ in points])
    gaps = np.array([g for _, g in points])
    fit = sm.OLS(gaps, sm.add_constant(years)).fit()
    x_by = (by - origin).days / 365.25
    prediction = fit.get_prediction(np.array([[1.0, x_by]])).summary_frame(alpha=0.05)
    mean = float(prediction["mean"].iloc[0])
    low, high = float(prediction["obs_ci_lower"].iloc[0]), float(prediction["obs_ci_upper"].iloc[0])
    df = len(points) - 2
    sd = (high - mean) / stats.t.ppf(0.975, df)
    intercept, slope = (float(v) for v in fit.params)
    slope_low, slope_high = (float(v) for v in fit.conf_int(alpha=0.05)[1])
    crossing = None
    if slope < 0:
        crossing = origin + dt.timedelta(days=(margin - intercept) / slope * 365.25)
    return TrendForecast(
        benchmark=benchmark,
        points=points,
        slope_per_year=slope,
        slope_ci95=(slope_low, slope_high),
        by=by,
        predicted_gap=mean,
        prediction_interval95=(low, high),
        margin=margin,
        probability_within_margin=float(stats.t.cdf((margin - mean) / sd, df)),
        crossing_date=crossing,
    )
