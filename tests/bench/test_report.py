"""Reports from real runs: JSON, Markdown, and HTML rendered in headless Chromium, where the
verdicts and plots must be on the first screen with one task and with three."""

import json

import numpy as np
import pytest

from openparity.bench import report, report_html, report_markdown
from openparity.bench.baselines import PUBLISHED_BASELINES
from openparity.bench.comparison import compare_runs, compare_to_target
from openparity.bench.gap_report import build_report
from openparity.bench.headline import for_comparison
from openparity.bench.runner import run_task
from openparity.bench.store import RunStore
from openparity.bench.tasks import get_task
from openparity.models import open_model
from openparity.testing.stub_server import StubServer
from tests.browser import render


@pytest.fixture(scope="module")
async def runs(tmp_path_factory):
    """Real runs of two scripted servers (one answers "A", one "答案：B") on 40 items of three
    tasks; the store and each task's (open, closed) run ids."""
    path = tmp_path_factory.mktemp("report") / "runs.sqlite"
    weak, other = StubServer(text="Answer: A"), StubServer(text="答案：B")
    pairs = {}
    with weak, other, RunStore(path) as store:
        async with (
            open_model(f"openai:open@{weak.base_url}") as a,
            open_model(f"openai:closed@{other.base_url}") as b,
        ):
            for name in ("mmlu", "arc-challenge", "gsm8k"):
                task = get_task(name)
                ra = await run_task(a, task, store, limit=40)
                rb = await run_task(b, task, store, limit=40)
                pairs[name] = (ra.run.run_id, rb.run.run_id)
    return path, pairs


@pytest.fixture(scope="module")
def gap_report(runs):
    path, pairs = runs
    with RunStore(path) as store:
        paired = compare_runs(store, *pairs["mmlu"])
        target = compare_to_target(store, pairs["mmlu"][0], PUBLISHED_BASELINES["mmlu"])
    return build_report([paired, target])


@pytest.fixture(scope="module")
def reports(runs):
    """The same page with one task and with three."""
    path, pairs = runs
    with RunStore(path) as store:
        comparisons = [compare_runs(store, *pairs[t]) for t in ("mmlu", "arc-challenge", "gsm8k")]
    return {1: build_report(comparisons[:1]), 3: build_report(comparisons)}


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
    assert any(
        "unpaired, against a published number: 88.5, model not named" in n for n in data["notes"]
    )
    assert paired["verdict"] in {"equivalent", "open better", "open worse", "inconclusive"}
    assert target["verdict"] == "open worse" and target["gap_ratio"] > 0.5


def test_headline_names_both_sides_the_size_and_the_verdict(gap_report):
    paired, target = gap_report.comparisons
    line = for_comparison(target)
    behind = (target.closed_mean - target.open_estimate.mean) * 100
    assert line.sentence == (
        f"open model {behind:.1f} points behind the published closed-model score on mmlu:"
        " open worse"
    )
    assert line.numbers.startswith(f"open {target.open_estimate.mean * 100:.1f} vs 88.5;")
    assert "n=40" in line.numbers and "95% CI" in line.numbers
    assert for_comparison(paired).sentence.startswith("open model ")
    assert paired.closed.run.model in for_comparison(paired).sentence


def test_markdown_report(gap_report):
    text = report_markdown.to_markdown(gap_report)
    assert "## Gap" in text and "## Verification" in text and "| mmlu |" in text
    assert "smallest provable margin" in text  # 40 items cannot prove ±0.7 points
    assert text.index("## At a glance") < text.index("## Gap")
    assert "points behind the published closed-model score" in text


def _colour_rows(pixels: np.ndarray, hex_colour: str, tolerance: float = 0.04) -> np.ndarray:
    """The screenshot rows that hold pixels of this colour."""
    target = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    close = np.all(np.abs(pixels[..., :3] - target) < tolerance, axis=-1)
    return np.flatnonzero(close.any(axis=1))


@pytest.mark.parametrize("tasks", [1, 3])
def test_html_reads_at_a_glance_in_headless_chromium(reports, tmp_path, tasks):
    """Verdicts first, then the plots, all on the first 900 px of a 1280 px window; the
    statistics tables below them; no script errors."""
    gap = reports[tasks]
    page = render(report_html.to_html(gap), tmp_path, height=900)
    dom = page.dom
    assert dom.count('class="callout') == tasks and dom.count("<svg") == 2
    first_table = dom.index("<table>")
    for c in gap.comparisons:
        sentence = for_comparison(c).sentence
        assert c.closed.run.model in sentence and c.task in sentence
        assert dom.index(sentence) < first_table  # the headline comes before any table
    assert dom.index("<svg") < first_table
    assert "open: openai:open@" in dom and "closed: openai:closed@" in dom
    assert "Uncaught" not in page.console and ":CONSOLE" not in page.console
    pixels = page.pixels
    assert pixels.shape[:2] == (900, 1280)
    callouts = [_colour_rows(pixels, c) for c in ("#fdecea", "#edf7ed", "#fff4e5")]
    assert sum(len(rows) for rows in callouts) > 0  # a verdict's coloured box is on screen
    plotted = (report_html.OPEN_COLOR, report_html.CLOSED_COLOR, report_html.MARGIN_FILL)
    for colour in plotted:  # both plots: the scores and the differences over their margin
        assert len(_colour_rows(pixels, colour)) > 0, f"{colour} markers not on the first screen"


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("tasks", [1, 3])
@pytest.mark.parametrize("draw", [report_html.score_figure, report_html.difference_figure])
def test_plot_legend_never_meets_the_axis_labels(reports, tasks, draw):
    """With one task the legend sat on the x-axis label; it now sits above the axes."""
    fig = draw(reports[tasks].comparisons)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    labels = [ax.xaxis.label, *ax.get_xticklabels(), *ax.get_yticklabels()]
    for label in labels:
        if label.get_text():
            assert not _overlaps(legend, label.get_window_extent(renderer)), label.get_text()
    assert legend.y0 >= ax.get_window_extent(renderer).y1  # nothing drawn over the points
    import matplotlib.pyplot as plt

    plt.close(fig)
