"""Trend forecast: frontier gaps, a recovered slope, the probability, and clear errors."""

import datetime as dt
import json

import numpy as np
import pytest
from scipy import stats

from openparity.forecast import trend_report
from openparity.forecast.trend import (
    ANCHORED,
    FRONTIER,
    PUBLIC_SCORES,
    YOURS,
    MeasuredGap,
    ScoreRow,
    TrendError,
    forecast_trend,
    frontier_gaps,
    gaps_from_gap_report,
    read_scores,
)
from tests.browser import render
from tests.cli import openparity


def synthetic(gap_at, n=12, noise=0.0, seed=0):
    """Closed fixed at 90; an open model every 2 months whose gap follows gap_at(years)."""
    rng = np.random.default_rng(seed)
    start = dt.date(2023, 1, 1)
    rows = [ScoreRow("closed", "closed", start, "b", 90.0, "t")]
    for i in range(1, n + 1):
        date = start + dt.timedelta(days=61 * i)
        score = 90 - gap_at(61 * i / 365.25) + rng.normal(0, noise)
        rows.append(ScoreRow(f"open{i}", "open", date, "b", min(score, 100), "t"))
    return rows


def test_frontier_only_moves_forward():
    rows = [
        ScoreRow("c1", "closed", dt.date(2023, 1, 1), "b", 80, "t"),
        ScoreRow("o1", "open", dt.date(2023, 2, 1), "b", 60, "t"),
        ScoreRow("o2", "open", dt.date(2023, 3, 1), "b", 55, "t"),  # worse: no new point
        ScoreRow("c2", "closed", dt.date(2023, 4, 1), "b", 85, "t"),
        ScoreRow("o3", "open", dt.date(2023, 5, 1), "b", 84, "t"),
    ]
    assert [g for _, g in frontier_gaps(rows, "b")] == [20, 25, 1]


def test_a_linear_gap_is_recovered():
    result = forecast_trend(synthetic(lambda t: 20 - 8 * t), "b", dt.date(2026, 1, 1), 1.0)
    assert result.slope_per_year == pytest.approx(-8, abs=1e-6)
    assert result.crossing_date is not None
    assert abs((result.crossing_date - dt.date(2025, 5, 17)).days) <= 2  # 19 / 8 years after


def test_probability_is_the_t_predictive_tail():
    result = forecast_trend(
        synthetic(lambda t: 20 - 8 * t, noise=2.0, seed=4), "b", dt.date(2025, 6, 1), 1.0
    )
    high = result.prediction_interval95[1]
    df = len(result.points) - 2
    sd = (high - result.predicted_gap) / stats.t.ppf(0.975, df)
    assert result.probability_within_margin == pytest.approx(
        stats.t.cdf((1.0 - result.predicted_gap) / sd, df)
    )
    assert 0 < result.probability_within_margin < 1


def test_public_scores_load_and_have_sources():
    rows = read_scores(PUBLIC_SCORES)
    assert {r.benchmark for r in rows} == {"mmlu", "gsm8k", "humaneval"}
    assert all(r.source for r in rows) and {r.kind for r in rows} == {"open", "closed"}
    result = forecast_trend(rows, "mmlu", dt.date(2025, 12, 31), 1.0)
    assert result.slope_per_year < 0 and len(result.points) >= 3


def test_bad_scores_are_clear(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("model,kind,date,benchmark,score,source\nx,opne,2024-01-01,mmlu,50,t\n")
    with pytest.raises(TrendError, match=r"s\.csv:2: kind must be open or closed"):
        read_scores(path)
    path.write_text("model,kind,date,benchmark,score,source\nx,open,01/02/2024,mmlu,50,t\n")
    with pytest.raises(TrendError, match="is not YYYY-MM-DD"):
        read_scores(path)
    path.write_text("model,kind,date\n")
    with pytest.raises(TrendError, match="lacks the column"):
        read_scores(path)
    with pytest.raises(TrendError, match="a trend needs at least 3"):
        forecast_trend(read_scores(PUBLIC_SCORES), "arc", dt.date(2026, 1, 1), 1.0)


def gap_report(path, created: str, gap: float, half: float = 5.0, task: str = "mmlu"):
    """A gap report as `openparity gap --format json` writes it: open − closed as fractions."""
    difference = {"mean": -gap / 100, "ci95": [(-gap - half) / 100, (-gap + half) / 100]}
    report = {
        "created": f"{created}T10:00:00+00:00",
        "tasks": [
            {
                "task": task,
                "fixture": False,
                "difference": difference,
                "open": {"model": "local:x", "mean": 0.28},
                "closed": {"model": "openai:gpt-4o", "mean": 0.28 + gap / 100},
            },
            {
                "task": "narrativeqa",
                "fixture": True,
                "difference": difference,
                "open": {"model": "local:x", "mean": 0.1},
                "closed": None,
                "target": {"model": None, "source": "seed"},
            },
        ],
    }
    path.write_text(json.dumps(report), encoding="utf-8")
    return path


def test_gap_reports_are_measured_gaps_not_scores(tmp_path):
    """--add-gap added the open model's score to the open frontier, where a weak model never
    moves it; a gap report is the user's own gap, closed − open, with its interval."""
    (gap,) = gaps_from_gap_report(gap_report(tmp_path / "gap.json", "2026-11-28", 58.5))
    assert (gap.benchmark, gap.date, gap.gap) == ("mmlu", dt.date(2026, 11, 28), 58.5)
    assert gap.ci95 == pytest.approx((53.5, 63.5))
    assert (gap.open_model, gap.closed_model) == ("local:x", "openai:gpt-4o")
    broken = tmp_path / "broken.json"
    broken.write_text('{"created": "2026-11-28", "tasks": [{"task": "mmlu"}]}')
    with pytest.raises(TrendError, match="is not a gap report"):
        gaps_from_gap_report(broken)


def test_the_users_gap_is_forecast_not_the_frontiers(tmp_path):
    """The issue: P(gap <= 1 by the end of 2026) = 0.99 from frontier data ending 2024-07,
    while the user's measured gap was 58.5 points."""
    rows = read_scores(PUBLIC_SCORES)
    by = dt.date(2026, 12, 31)
    frontier = forecast_trend(rows, "mmlu", by, 1.0)
    assert frontier.basis == FRONTIER and frontier.probability_within_margin > 0.9
    gaps = gaps_from_gap_report(gap_report(tmp_path / "gap.json", "2026-12-07", 58.5))
    yours = forecast_trend(rows, "mmlu", by, 1.0, gaps)
    assert yours.basis == ANCHORED and yours.probability_within_margin < 0.05
    ahead = (by - dt.date(2026, 12, 7)).days / 365.25
    assert yours.predicted_gap == pytest.approx(58.5 + frontier.slope_per_year * ahead)
    assert "your measured gap on mmlu, 58.5 points on 2026-12-07" in trend_report.fit_on(yours)
    assert "not yours" in trend_report.fit_on(frontier)
    assert any("not your model" in n for n in trend_report.notes(frontier))
    assert any("frontier's rate" in n for n in trend_report.notes(yours))


def test_three_dated_gap_reports_fit_the_users_own_rate(tmp_path):
    rows = read_scores(PUBLIC_SCORES)
    dates_gaps = [("2026-01-15", 60.0), ("2026-05-15", 50.0), ("2026-09-15", 40.0)]
    gaps = [
        g
        for i, (d, v) in enumerate(dates_gaps)
        for g in gaps_from_gap_report(gap_report(tmp_path / f"g{i}.json", d, v))
    ]
    result = forecast_trend(rows, "mmlu", dt.date(2027, 9, 15), 1.0, gaps)
    assert result.basis == YOURS and len(result.measured) == 3
    assert result.slope_per_year == pytest.approx(-30, rel=0.02)  # 10 points per 4 months
    assert result.predicted_gap == pytest.approx(10, abs=1)
    assert "your 3 measured gaps on mmlu" in trend_report.fit_on(result)


def line_frontier(rng, n: int, sigma: float = 2.0) -> list[ScoreRow]:
    """Both frontiers move at every date (closed +5 points a step), so the frontier gap is
    exactly a line (20 - 8 points/year) plus independent noise of SD `sigma`."""
    start, rows = dt.date(2023, 1, 1), []
    for i in range(n):
        date, closed = start + dt.timedelta(days=61 * i), 50.0 + 5 * i
        gap = 20 - 8 * (61 * i / 365.25) + rng.normal(0, sigma)
        rows += [
            ScoreRow(f"c{i}", "closed", date, "b", closed, "t"),
            ScoreRow(f"o{i}", "open", date, "b", closed - gap, "t"),
        ]
    return rows


@pytest.mark.parametrize(("ci_half", "points"), [(6.0, 8), (1.0, 4), (15.0, 8), (0.1, 6)])
def test_carried_forward_interval_keeps_its_coverage(ci_half, points):
    """Seeded simulation of the model the anchored forecast assumes: the user's gap on a
    line parallel to the frontier's, measured once with a 95% CI of ±ci_half, and the gap a
    year on scattering about its line as frontier points do. The 95% prediction interval
    covers it 95% of the time, with few frontier points (4: df 2) and with a measurement
    far more or far less precise than the frontier."""
    rng = np.random.default_rng(int(ci_half * 10) + points)
    measured_on, by = dt.date(2025, 3, 1), dt.date(2026, 3, 1)
    true_then = 45 - 8 * (measured_on - dt.date(2023, 1, 1)).days / 365.25
    covered, runs = 0, 800
    for _ in range(runs):
        rows = line_frontier(rng, points)
        seen = true_then + rng.normal(0, ci_half / 1.959964)
        gap = MeasuredGap(measured_on, "b", seen, (seen - ci_half, seen + ci_half), "o", "c", "s")
        result = forecast_trend(rows, "b", by, 1.0, [gap])
        assert result.basis == ANCHORED and len(result.points) == points
        actual = true_then - 8 * (by - measured_on).days / 365.25 + rng.normal(0, 2.0)
        low, high = result.prediction_interval95
        covered += low <= actual <= high
    assert 0.92 <= covered / runs <= 0.975, covered / runs


@pytest.mark.slow
def test_cli_says_what_a_gap_report_added(tmp_path):
    path = gap_report(tmp_path / "gap.json", "2026-11-28", 60.0)
    used = openparity("trend", "--benchmark", "mmlu", "--add-gap", str(path), timeout=60)
    assert used.returncode == 0, used.stderr
    assert "your mmlu gap 60.0 points [55.0, 65.0] on 2026-11-28" in used.stderr
    assert "fit on: your measured gap on mmlu" in used.stdout
    unused = openparity("trend", "--benchmark", "gsm8k", "--add-gap", str(path), timeout=60)
    assert "no gsm8k task in it (its tasks: mmlu)" in unused.stderr
    assert "fit on: the published frontier gap on gsm8k" in unused.stdout


@pytest.mark.slow
def test_cli_json_and_html(tmp_path):
    run = ("trend", "--benchmark", "humaneval", "--by", "2025-12-31")
    result = openparity(*run, "--format", "json", timeout=60)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert 0 <= data["probability_within_margin"] <= 1 and data["points"]
    page_file = tmp_path / "trend.html"
    result = openparity(*run, "--output", str(page_file), timeout=60)
    assert result.returncode == 0, result.stderr
    page = render(page_file.read_text(encoding="utf-8"), tmp_path, height=1200)
    assert page.dom.count("<svg") == 1 and ":CONSOLE" not in page.console
    assert page.pixels.std() > 0.05
