"""Advice rules: each branch of the selection matrix, with its reasons and risks."""

import json

import pytest

from openparity.errors import OpenparityError
from openparity.forecast.advice import Situation, advise, load_verdicts
from tests.cli import openparity


def test_air_gapped_means_self_hosting_whatever_the_size():
    advice = advise(Situation("startup", 1000, 1, "air-gapped"))
    assert advice.recommendation.startswith("Open model on your own accelerators")
    assert any("no closed fallback" in r for r in advice.risks)


def test_startup_fine_tunes_and_small_teams_are_warned():
    advice = advise(Situation("startup", 50_000, 1))
    assert advice.recommendation.startswith("Fine-tune an open model")
    assert any("fewer than 2 ML engineers" in r for r in advice.risks)


def test_midsize_above_break_even_self_hosts():
    advice = advise(Situation("midsize", 2e6, 4, break_even_requests=6.7e5))
    assert advice.recommendation.startswith("Open model on your own accelerators")
    assert "volume is above the self-hosting break-even (670,000)" in advice.why


def test_enterprise_goes_hybrid_and_measured_gaps_become_risks():
    verdicts = {"gsm8k": "open worse", "mmlu": "equivalent", "humaneval": "inconclusive"}
    advice = advise(Situation("enterprise", 5e5, 10, break_even_requests=1e6, verdicts=verdicts))
    assert advice.recommendation.startswith("Hybrid")
    assert advice.recommendation.endswith("open-first only on the tasks at parity (mmlu)")
    assert "parity shown on 1 of 3 measured tasks" in advice.why
    assert "gsm8k: the open model is measurably worse" in advice.risks
    assert any(r.startswith("humaneval: parity not shown") for r in advice.risks)
    assert any("below break-even" in r for r in advice.risks)


def test_the_headline_follows_the_measured_verdicts():
    """Self-hosting is not the headline while no task has shown parity."""
    worse = {"gsm8k": "open worse", "mmlu": "inconclusive (underpowered: needs ~900 items)"}
    advice = advise(Situation("midsize", 2e6, 4, break_even_requests=6.7e5, verdicts=worse))
    assert advice.recommendation.startswith("Keep the closed model as the default")
    assert "Once one does: open model on your own accelerators" in advice.recommendation
    at_parity = {"gsm8k": "equivalent", "mmlu": "open better"}
    advice = advise(Situation("midsize", 2e6, 4, break_even_requests=6.7e5, verdicts=at_parity))
    assert advice.recommendation.startswith("Open model on your own accelerators")
    air_gapped = advise(Situation("midsize", 2e6, 4, "air-gapped", verdicts=worse))
    assert air_gapped.recommendation.startswith("Open model on your own accelerators")


def test_verdicts_come_from_a_gap_report(tmp_path):
    report = tmp_path / "gap.json"
    report.write_text(json.dumps({"tasks": [{"task": "mmlu", "verdict": "open worse"}]}))
    assert load_verdicts(report) == {"mmlu": "open worse"}
    report.write_text("[1, 2]")
    with pytest.raises(OpenparityError, match="is not a gap report"):
        load_verdicts(report)


def test_cli():
    result = openparity(
        "advise",
        "--size",
        "enterprise",
        "--requests",
        "100000",
        "--ml-engineers",
        "5",
        "--json",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["recommendation"].startswith("Hybrid")
    bad = openparity(
        "advise", "--size", "huge", "--requests", "1", "--ml-engineers", "1", timeout=60
    )
    assert bad.returncode == 2 and "unknown size 'huge'" in bad.stderr


def test_advise_takes_its_break_even_from_costs_own_report(tmp_path):
    """No copying numbers by hand: `cost --format json` then `advise --cost-report`."""
    cost = tmp_path / "cost.json"
    made = openparity(
        "cost",
        "--gpu-hourly",
        "2.5",
        "--throughput",
        "1500",
        "--requests",
        "2000000",
        "--format",
        "json",
        "--output",
        str(cost),
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    break_even = json.loads(cost.read_text())["break_even_monthly_requests"]
    common = ["advise", "--size", "midsize", "--requests", "2000000", "--ml-engineers", "4"]
    by_report = openparity(*common, "--cost-report", str(cost), "--json", timeout=60)
    by_hand = openparity(*common, "--break-even", str(break_even), "--json", timeout=60)
    assert by_report.returncode == 0, by_report.stderr
    assert json.loads(by_report.stdout) == json.loads(by_hand.stdout)
    both = openparity(*common, "--cost-report", str(cost), "--break-even", "1", timeout=60)
    assert both.returncode == 2 and "not both" in both.stderr
    cost.write_text("{}")
    broken = openparity(*common, "--cost-report", str(cost), timeout=60)
    assert broken.returncode == 2 and "is not a cost report" in broken.stderr
