"""Trend forecast: frontier gaps, a recovered slope, the probability, and clear errors."""

import datetime as dt
import json

import numpy as np
import pytest
from scipy import stats

from openparity.forecast.trend import (
    PUBLIC_SCORES,
    ScoreRow,
    TrendError,
    forecast_trend,
    frontier_gaps,
    read_scores,
    rows_from_gap_report,
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


def test_gap_reports_become_rows(tmp_path):
    report = {
        "created": "2026-11-28T10:00:00+00:00",
        "tasks": [
            {
                "task": "mmlu",
                "fixture": False,
                "open": {"model": "local:x", "mean": 0.28},
                "closed": {"model": "openai:gpt-4o", "mean": 0.88},
            },
            {
                "task": "narrativeqa",
                "fixture": True,
                "open": {"model": "local:x", "mean": 0.1},
                "closed": None,
            },
        ],
    }
    path = tmp_path / "gap.json"
    path.write_text(json.dumps(report))
    rows = rows_from_gap_report(path)
    assert [(r.kind, r.benchmark, round(r.score, 1)) for r in rows] == [
        ("open", "mmlu", 28.0),
        ("closed", "mmlu", 88.0),
    ]


def test_cli_says_what_a_gap_report_added(tmp_path):
    report = {
        "created": "2026-11-28T10:00:00+00:00",
        "tasks": [{"task": "mmlu", "open": {"model": "local:x", "mean": 0.28}, "closed": None}],
    }
    path = tmp_path / "gap.json"
    path.write_text(json.dumps(report))
    used = openparity("trend", "--benchmark", "mmlu", "--add-gap", str(path), timeout=60)
    assert used.returncode == 0, used.stderr
    assert "1 of 1 model scores are mmlu; open local:x 28.0 on 2026-11-28" in used.stderr
    unused = openparity("trend", "--benchmark", "gsm8k", "--add-gap", str(path), timeout=60)
    assert "0 of 1 model scores are gsm8k (nothing added to this trend)" in unused.stderr


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
