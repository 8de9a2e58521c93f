"""Before and after training: the trained model against its base on the same items, in the same
report as the gap to the closed model; a drop on any task is called a regression."""

import json
import os
import re

import numpy as np
import pytest

from openparity.bench import report as render
from openparity.bench import report_html, report_markdown
from openparity.bench.comparison import compare_runs
from openparity.bench.gap_report import build_report
from openparity.bench.movement import measure_movement
from openparity.bench.store import Record, RunInfo, RunStore
from tests.browser import render as open_in_chromium
from tests.cli import openparity

N = 40


def scored_run(store: RunStore, run_id: str, model: str, task: str, correct: set[int]) -> None:
    """A finished run whose item i scored 1 exactly when i is in `correct`."""
    items = [f"{task}/{i}" for i in range(N)]
    store.create_run(
        RunInfo(
            run_id,
            model,
            task,
            {"seed": 0},
            items,
            "test items",
            False,
            "accuracy",
            0.05,
            status="complete",
        )
    )
    for i, item in enumerate(items):
        store.put(Record(run_id, item, 0, "h", response="…", score=float(i in correct)))


def before_and_after(path) -> RunStore:
    """`fmt`: training fixed 30 of 38 failures; `guard`: it broke 14 of 30 successes; `flat`:
    four items changed each way. The closed model is strong on all three."""
    store = RunStore(path)
    runs = {
        "fmt": (set(range(2)), set(range(32)), set(range(38))),
        "guard": (set(range(30)), set(range(16)), set(range(36))),
        "flat": (set(range(20)), set(range(4, 24)), set(range(30))),
    }
    for task, (base, trained, closed) in runs.items():
        scored_run(store, f"{task}-base", "local:smollm2-135m", task, base)
        scored_run(store, f"{task}-trained", "hf:runs/fmt/final", task, trained)
        scored_run(store, f"{task}-closed", "openai:gpt-4o", task, closed)
    return store


@pytest.mark.slow
def test_report_says_what_training_moved_and_flags_the_regression(tmp_path):
    path = tmp_path / "runs.sqlite"
    before_and_after(path).close()
    tasks = ("fmt", "guard", "flat")
    result = openparity(
        "bench",
        "report",
        *(f"{t}-trained" for t in tasks),
        "--against",
        ",".join(f"{t}-closed" for t in tasks),
        "--base",
        ",".join(f"{t}-base" for t in tasks),
        "--store",
        str(path),
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    moved = {m["task"]: m for m in data["training"]}
    assert {t: moved[t]["verdict"] for t in tasks} == {
        "fmt": "improved",
        "guard": "regressed",
        "flat": "inconclusive",
    }
    fmt = moved["fmt"]
    assert (fmt["base"]["mean"], fmt["trained"]["mean"]) == (2 / N, 32 / N)
    assert fmt["change"]["mean"] == 30 / N and fmt["p_difference"] < 1e-6
    assert fmt["p_difference_holm"] >= fmt["p_difference"]  # Holm across the three tasks
    assert fmt["gap_ratio_before"] == pytest.approx((38 - 2) / 38)
    after = {t["task"]: t for t in data["tasks"]}
    assert after["fmt"]["gap_ratio"] == pytest.approx(
        (38 - 32) / 38
    )  # the gap after, same closed run
    assert moved["guard"]["change"]["mean"] == pytest.approx(-14 / N)
    assert any("guard: training cost 35.0 points" in n and "regression" in n for n in data["notes"])
    assert any("different backends (hf and local)" in n for n in data["notes"])
    terminal = openparity(
        "bench",
        "report",
        "guard-trained",
        "--base",
        "guard-base",
        "--store",
        str(path),
        env={**os.environ, "COLUMNS": "120"},
    )
    assert terminal.returncode == 0, terminal.stderr
    assert "What training moved" in terminal.stdout
    assert "guard after training: regressed" in terminal.stdout


@pytest.mark.slow
def test_before_after_renders_in_markdown_and_chromium(tmp_path):
    store = before_and_after(tmp_path / "runs.sqlite")
    comparisons = [compare_runs(store, f"{t}-trained", f"{t}-closed") for t in ("fmt", "guard")]
    movements = [
        measure_movement(store, f"{t}-trained", f"{t}-base", f"{t}-closed")
        for t in ("fmt", "guard")
    ]
    report = build_report(comparisons, movements=movements)
    markdown = report_markdown.to_markdown(report)
    assert "## What training moved (trained − base, paired)" in markdown
    assert "| fmt | 5.0 [" in markdown and "94.7% → 15.8%" in markdown
    page = open_in_chromium(report_html.to_html(report), tmp_path)
    assert page.dom.count("<table>") == 4 and "What training moved" in page.dom
    assert "Uncaught" not in page.console
    rows = render.run_rows(report)
    assert {r["side"] for r in rows} == {"open", "closed", "base"}
    store.close()


@pytest.mark.slow
def test_without_a_closed_side_only_the_change_is_reported(tmp_path):
    path = tmp_path / "runs.sqlite"
    before_and_after(path).close()
    result = openparity(
        "bench",
        "report",
        "fmt-trained",
        "--base",
        "fmt-base",
        "--store",
        str(path),
        "--format",
        "markdown",
    )
    assert result.returncode == 0, result.stderr
    assert "_no tasks_" in result.stdout and "| fmt |" in result.stdout
    assert "94.7%" not in result.stdout  # no reference: no gap ratio invented
    missing = openparity("bench", "report", "fmt-trained", "--store", str(path))
    assert missing.returncode == 2 and "--base BASE_RUN_ID" in missing.stderr


def test_gap_refuses_the_base_being_the_open_model(tmp_path):
    result = openparity(
        "gap",
        "--open",
        "local:smollm2-135m",
        "--base",
        "local:smollm2-135m",
        "--tasks",
        "gsm8k",
        "--store",
        str(tmp_path / "s.sqlite"),
    )
    assert result.returncode == 2 and "the same model is given twice" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_checkpoint_retrained_in_place_is_a_new_model(tmp_path):
    """Run ids and cached answers follow the weights, not the path: a rerun after retraining to
    the same directory must not be answered from the old checkpoint's run."""
    from openparity.models.spec import parse_spec

    ckpt = tmp_path / "final"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    (ckpt / "model.safetensors").write_bytes(np.zeros(8, dtype=np.float32).tobytes())
    first = parse_spec(f"hf:{ckpt}").identity()
    assert first == parse_spec(f"hf:{ckpt}").identity()
    (ckpt / "model.safetensors").write_bytes(np.ones(9, dtype=np.float32).tobytes())
    assert parse_spec(f"hf:{ckpt}").identity() != first
    assert parse_spec("local:smollm2-135m").identity() == "local:smollm2-135m"


def test_before_after_at_80_columns_keeps_the_task_and_every_number_whole(tmp_path):
    """At 80 columns the table lost its task column and cut numbers ("5.0 [0.6, 16"):
    intervals now go under their values, and whole columns are left out with a note."""
    path = tmp_path / "runs.sqlite"
    before_and_after(path).close()
    result = openparity(
        "bench",
        "report",
        "fmt-trained",
        "guard-trained",
        "--against",
        "fmt-closed,guard-closed",
        "--base",
        "fmt-base,guard-base",
        "--store",
        str(path),
        env={**os.environ, "COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    table = lines[next(i for i, line in enumerate(lines) if "What training moved" in line) :]
    rows = [line for line in table if line.startswith("│ ")]
    assert any(r.startswith("│ fmt ") for r in rows) and any(r.startswith("│ guard ") for r in rows)
    body = "\n".join(table)
    assert "94.7% → 15.8%" in body  # the gap before → after, whole
    assert re.search(r"\[\d+\.\d, \d+\.\d\] │", body)  # an interval whole, on its own line
    assert "+75.0" in body and "improved" in body and "regressed" in body
    left_out = next(line for line in table if line.startswith("left out at this width:"))
    assert "trained" in left_out and "base" not in left_out
