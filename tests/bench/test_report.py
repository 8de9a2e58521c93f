"""Reports from real runs: JSON, Markdown, and HTML rendered in headless Chromium."""

import json

import pytest

from openparity.bench import report
from openparity.bench.compare import build_report, compare_runs, compare_to_target
from openparity.bench.runner import run_task
from openparity.bench.store import RunStore
from openparity.bench.tasks import get_task
from openparity.models import open_model
from openparity.testing.stub_server import StubServer
from tests.browser import render


@pytest.fixture(scope="module")
async def gap_report(tmp_path_factory):
    """Two real runs (two scripted servers answer letters) over 40 MMLU items, compared."""
    path = tmp_path_factory.mktemp("report") / "runs.sqlite"
    task = get_task("mmlu")
    weak, other = StubServer(text="Answer: A"), StubServer(text="答案：B")
    with weak, other, RunStore(path) as store:
        async with (
            open_model(f"openai:open@{weak.base_url}") as a,
            open_model(f"openai:closed@{other.base_url}") as b,
        ):
            ra = await run_task(a, task, store, limit=40)
            rb = await run_task(b, task, store, limit=40)
        paired = compare_runs(store, ra.run.run_id, rb.run.run_id)
        target = compare_to_target(store, ra.run.run_id, 0.885, "seed")
    return build_report([paired, target])


def test_json_report(gap_report):
    data = json.loads(report.to_json(gap_report))
    paired, target = data["tasks"]
    assert paired["open"]["n"] == 40 and paired["closed"]["model"].startswith("openai:closed")
    assert paired["p_mcnemar"] is not None and paired["difference"]["bootstrap_ci95"]
    assert target["target"] == {"score": 0.885, "source": "seed"} and target["closed"] is None
    assert paired["verdict"] in {"equivalent", "open better", "open worse", "inconclusive"}
    assert target["verdict"] == "open worse" and target["gap_ratio"] > 0.5


def test_markdown_report(gap_report):
    text = report.to_markdown(gap_report)
    assert "## Gap" in text and "## Verification" in text and "| mmlu |" in text
    assert "smallest provable margin" in text  # 40 items cannot prove ±0.7 points


def test_html_report_renders_in_headless_chromium(gap_report, tmp_path):
    page = render(report.to_html(gap_report), tmp_path)
    assert page.dom.count("<table>") == 3 and page.dom.count("<svg") == 2
    assert "Uncaught" not in page.console and ":CONSOLE" not in page.console
    assert page.pixels.shape[0] == 1800 and page.pixels.std() > 0.05  # not a blank page
