"""Reports from real runs: JSON, Markdown, and HTML rendered in headless Chromium."""

import json

import pytest

from openparity.bench import report
from openparity.bench.baselines import PUBLISHED_BASELINES
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
        target = compare_to_target(store, ra.run.run_id, PUBLISHED_BASELINES["mmlu"])
    return build_report([paired, target])


def test_json_report(gap_report):
    data = json.loads(report.to_json(gap_report))
    paired, target = data["tasks"]
    assert paired["open"]["n"] == 40 and paired["closed"]["model"].startswith("openai:closed")
    assert paired["p_difference"] is not None and len(paired["equivalence_ci90"]) == 2
    published = target["target"]
    assert (published["score"], published["n"], published["model"]) == (0.885, 14042, None)
    assert published["comparison"] == "unpaired, against a published number"
    assert target["closed"] is None and not target["paired"] and paired["paired"]
    assert "14042" in target["method"] and "Tango score test" in paired["method"]
    assert any("unpaired, against a published number: 88.5, model not named" in n
               for n in data["notes"])  # fmt: skip
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
