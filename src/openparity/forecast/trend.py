"""Trend forecast from dated benchmark scores: the open-vs-closed frontier gap over time, a
linear fit with its uncertainty, and the probability that the gap is within a margin by a date.

The frontier gap at a date is the best closed score so far minus the best open score so far;
a point is kept each time either frontier moves. Vendors report with different settings
(shots, CoT), so treat the trend as indicative.

The frontier is not the user's model. With the user's own measured gaps (gap reports) the
forecast is about their gap instead: fit on their gaps when there are three dates or more,
otherwise their latest gap carried forward at the frontier's rate, with the rate's
uncertainty, the frontier's scatter and their measurement's own error in the interval.
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
class MeasuredGap:
    """The user's own gap on one benchmark, from an `openparity gap --format json` report."""

    date: dt.date
    benchmark: str
    gap: float  # closed − open, points
    ci95: tuple[float, float]
    open_model: str
    closed_model: str  # the closed model, or whose published score it was
    source: str

    @property
    def se(self) -> float:
        return (self.ci95[1] - self.ci95[0]) / (2 * 1.959964)


FRONTIER = "frontier"  # fit on the published frontier gaps
YOURS = "your gaps"  # fit on the user's own measured gaps
ANCHORED = "your gap at the frontier's rate"  # the user's latest gap, the frontier's slope


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
    basis: str = FRONTIER  # FRONTIER | YOURS | ANCHORED
    measured: tuple[MeasuredGap, ...] = ()  # the user's gaps on this benchmark, by date


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


def gaps_from_gap_report(path: Path) -> list[MeasuredGap]:
    """The measured gap (closed − open, with its 95% CI) of every task of an `openparity gap
    --format json` report; fixture runs say nothing about the real benchmark and are left
    out."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        date = dt.date.fromisoformat(data["created"][:10])
        gaps = []
        for t in data["tasks"]:
            if t.get("fixture"):
                continue
            difference = t["difference"]  # open − closed, as fractions
            low, high = difference["ci95"]
            if t.get("closed"):
                closed = t["closed"]["model"]
            else:
                model = t["target"].get("model")
                published = "the published closed-model score"
                closed = f"{model} (published score)" if model else published
            gap = MeasuredGap(
                date,
                t["task"].strip().lower(),
                -difference["mean"] * 100,
                (-high * 100, -low * 100),
                t["open"]["model"],
                closed,
                str(path),
            )
            gaps.append(gap)
        return gaps
    except FileNotFoundError:
        raise TrendError(f"gap report not found: {path}") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        raise TrendError(
            f"{path} is not a gap report",
            hint="write one with: openparity gap ... --format json --output gap.json",
        ) from None


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


@dataclass(frozen=True)
class _Line:
    origin: dt.date
    intercept: float
    slope: float
    slope_se: float
    slope_ci95: tuple[float, float]
    scatter: float  # residual SD of the points around the line
    df: int
    fit: object  # statsmodels results, for the prediction at a date

    def years(self, when: dt.date) -> float:
        return (when - self.origin).days / 365.25


def _fit_line(points: list[tuple[dt.date, float]]) -> _Line:
    import numpy as np
    import statsmodels.api as sm

    origin = points[0][0]
    years = np.array([(d - origin).days / 365.25 for d, _ in points])
    fit = sm.OLS(np.array([g for _, g in points]), sm.add_constant(years)).fit()
    intercept, slope = (float(v) for v in fit.params)
    low, high = (float(v) for v in fit.conf_int(alpha=0.05)[1])
    return _Line(
        origin,
        intercept,
        slope,
        float(fit.bse[1]),
        (low, high),
        math.sqrt(float(fit.scale)),
        len(points) - 2,
        fit,
    )


def forecast_trend(
    rows: list[ScoreRow],
    benchmark: str,
    by: dt.date,
    margin: float,
    measured: list[MeasuredGap] | tuple[MeasuredGap, ...] = (),
) -> TrendForecast:
    """P(gap <= margin by `by`): for the frontier, or for the user's own gap when `measured`
    holds gaps on this benchmark (see the module's docstring)."""
    points = frontier_gaps(rows, benchmark)
    mine = _by_date([g for g in measured if g.benchmark == benchmark])
    if len(mine) >= 3:
        line = _fit_line([(g.date, g.gap) for g in mine])
        return _from_line(benchmark, points, line, by, margin, YOURS, mine)
    if len(points) < 3:
        raise TrendError(
            f"{benchmark}: {len(points)} frontier points; a trend needs at least 3",
            hint="add dated open and closed scores for this benchmark (--add FILE.csv)",
        )
    frontier = _fit_line(points)
    if not mine:
        return _from_line(benchmark, points, frontier, by, margin, FRONTIER, ())
    return _anchored(points, frontier, mine[-1], by, margin, mine)


def _by_date(gaps: list[MeasuredGap]) -> tuple[MeasuredGap, ...]:
    """One gap per date (the last given), oldest first."""
    latest = {g.date: g for g in gaps}
    return tuple(latest[d] for d in sorted(latest))


def _from_line(benchmark, points, line: _Line, by, margin, basis, mine) -> TrendForecast:
    import numpy as np
    from scipy import stats

    frame = line.fit.get_prediction(np.array([[1.0, line.years(by)]])).summary_frame(alpha=0.05)
    mean = float(frame["mean"].iloc[0])
    low, high = float(frame["obs_ci_lower"].iloc[0]), float(frame["obs_ci_upper"].iloc[0])
    sd = (high - mean) / stats.t.ppf(0.975, line.df)
    low, high = max(low, -100.0), min(high, 100.0)  # a gap lies in ±100 points
    crossing = None
    if line.slope < 0:
        crossing = line.origin + dt.timedelta(days=(margin - line.intercept) / line.slope * 365.25)
    return TrendForecast(
        benchmark=benchmark,
        points=points,
        slope_per_year=line.slope,
        slope_ci95=line.slope_ci95,
        by=by,
        predicted_gap=mean,
        prediction_interval95=(low, high),
        margin=margin,
        probability_within_margin=float(stats.t.cdf((margin - mean) / sd, line.df)),
        crossing_date=crossing,
        basis=basis,
        measured=tuple(mine),
    )


def _anchored(points, frontier: _Line, latest: MeasuredGap, by, margin, mine) -> TrendForecast:
    """The user's latest gap moved at the frontier's slope. Its variance: the measurement's
    own, the slope's uncertainty over the years ahead, and the frontier's scatter around its
    line (a single future gap is as noisy as one frontier point)."""
    from scipy import stats

    ahead = (by - latest.date).days / 365.25
    mean = latest.gap + frontier.slope * ahead
    estimated = (ahead * frontier.slope_se) ** 2 + frontier.scatter**2  # from the frontier's fit
    variance = latest.se**2 + estimated
    sd = math.sqrt(variance)
    df = variance**2 / (estimated**2 / frontier.df)  # Welch-Satterthwaite: the CI's part is known
    half = stats.t.ppf(0.975, df) * sd
    low, high = max(mean - half, -100.0), min(mean + half, 100.0)  # a gap lies in ±100 points
    crossing = latest.date if latest.gap <= margin else None
    if frontier.slope < 0 and latest.gap > margin:
        years = (margin - latest.gap) / frontier.slope
        crossing = latest.date + dt.timedelta(days=years * 365.25)
    return TrendForecast(
        benchmark=latest.benchmark,
        points=points,
        slope_per_year=frontier.slope,
        slope_ci95=frontier.slope_ci95,
        by=by,
        predicted_gap=mean,
        prediction_interval95=(low, high),
        margin=margin,
        probability_within_margin=float(stats.t.cdf((margin - mean) / sd, df)),
        crossing_date=crossing,
        basis=ANCHORED,
        measured=tuple(mine),
    )
