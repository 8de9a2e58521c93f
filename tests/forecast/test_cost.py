"""Cost model: hand-computed figures, capacity and input checks, the CLI and its HTML page."""

import functools
import json

import pytest

from openparity.forecast.cost import CostInputError, SelfHosting, Traffic, compare_costs
from openparity.models.prices import Price
from tests.browser import render
from tests.cli import openparity

cli = functools.partial(openparity, timeout=120)  # these commands are quick

PRICE = Price(2.5, 10.0, "test", "2025-08")


def test_figures_match_a_hand_calculation():
    hosting = SelfHosting(gpu_hourly_usd=2.5, gpus=1, tokens_per_second=1500)
    traffic = Traffic(monthly_requests=2_000_000, prompt_tokens=500, completion_tokens=200)
    report = compare_costs(PRICE, hosting, traffic, open_share=0.8)
    per_request = (500 * 2.5 + 200 * 10) / 1e6  # $0.00325
    assert report.api_monthly_usd == pytest.approx(per_request * 2_000_000)  # $6,500
    assert report.self_hosted_monthly_usd == pytest.approx(2.5 * 730 * 1.2)  # $2,190
    assert report.hybrid_monthly_usd == pytest.approx(2190 + 0.2 * 6500)
    assert report.break_even_monthly_requests == pytest.approx(2190 / per_request)
    assert report.capacity_used == pytest.approx(2e6 * 200 * 0.8 / (1500 * 3600 * 730 * 0.6))
    assert report.api_usd_per_mtok == pytest.approx(per_request / 700 * 1e6)
    assert report.saving_vs_api == pytest.approx((6500 - 3490) / 6500)


def test_traffic_beyond_capacity_is_an_error_not_a_price():
    hosting = SelfHosting(gpu_hourly_usd=2.5, gpus=1, tokens_per_second=10)
    with pytest.raises(CostInputError, match="capacity"):
        compare_costs(PRICE, hosting, Traffic(10_000_000, 500, 200))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gpu_hourly_usd": -1, "gpus": 1, "tokens_per_second": 10},
        {"gpu_hourly_usd": 1, "gpus": 0, "tokens_per_second": 10},
        {"gpu_hourly_usd": 1, "gpus": 1, "tokens_per_second": 10, "utilisation": 1.5},
    ],
)
def test_impossible_deployments_are_refused(kwargs):
    with pytest.raises(CostInputError):
        SelfHosting(**kwargs)


@pytest.mark.slow
def test_cli_json_html_and_errors(tmp_path):
    args = ["--gpu-hourly", "2.5", "--throughput", "1500", "--requests", "2000000"]
    result = cli("cost", *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["closed_model"] == "openai:gpt-4o" and data["api_monthly_usd"] == pytest.approx(
        6500
    )
    assert "Break-even" in " ".join(data["notes"])
    assert "500 prompt + 200 answer tokens each (assumed" in data["notes"][0]  # not hidden
    page_file = tmp_path / "cost.html"
    assert cli("cost", *args, "--output", str(page_file)).returncode == 0
    page = render(page_file.read_text(encoding="utf-8"), tmp_path, height=1000)
    assert page.dom.count("<svg") == 1 and "Monthly cost" in page.dom and page.pixels.std() > 0.05
    unpriced = cli("cost", *args, "--closed", "openai:m@http://127.0.0.1:9/v1")
    assert unpriced.returncode == 2 and "no price known" in unpriced.stderr
