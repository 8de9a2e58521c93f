"""The harness commands as a user runs them (real subprocesses, the embedded model)."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import time

import pytest

from tests.cli import CLI, like_a_terminal, openparity


def test_bench_tasks_lists_real_counts():
    result = openparity("bench", "tasks", "--json")
    assert result.returncode == 0, result.stderr
    counts = {row["task"]: row["items"] for row in json.loads(result.stdout)}
    assert counts == {
        "gsm8k": 1319,
        "mmlu": 14042,
        "humaneval": 164,
        "narrativeqa": "-",
        "mmbench": "-",
        "arc-challenge": 1172,
        "mbpp": 500,
    }


@pytest.mark.slow
def test_gap_on_the_embedded_model_against_published_targets(tmp_path):
    report_file = tmp_path / "gap.html"
    result = openparity(
        "gap",
        "--limit",
        "2",
        "--format",
        "json",
        "--store",
        str(tmp_path / "s.sqlite"),
        "--output",
        str(tmp_path / "gap.json"),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "gap.json").read_text(encoding="utf-8"))
    assert [t["task"] for t in report["tasks"]] == ["gsm8k", "humaneval", "mmlu"]
    for task in report["tasks"]:
        assert task["open"]["model"] == "local:smollm2-135m" and task["open"]["n"] == 2
        assert task["target"]["source"].startswith("the seed's")
        assert task["verdict"] in {"open worse", "inconclusive"}
    again = openparity(
        "gap", "--limit", "2", "--store", str(tmp_path / "s.sqlite"), "--output", str(report_file)
    )
    assert again.returncode == 0 and "Verification" in again.stdout  # reuses the finished runs
    assert report_file.read_text(encoding="utf-8").startswith("<!doctype html>")


@pytest.mark.slow
def test_gap_against_an_unreachable_closed_model_says_why_before_comparing(tmp_path):
    """Every request to the closed model fails (nothing listens there): one line saying how
    many failed and why, not a comparison over zero shared items."""
    from openparity.models.local_server import free_port

    closed = f"openai:gone@http://127.0.0.1:{free_port()}/v1"
    result = openparity(
        "gap",
        "--closed",
        closed,
        "--tasks",
        "mmlu",
        "--limit",
        "2",
        "--store",
        str(tmp_path / "s.sqlite"),
    )
    assert result.returncode != 0
    assert f"2/2 requests to {closed} failed on mmlu" in result.stderr
    assert "cannot reach" in result.stderr and "share 0 scored items" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_run_compare_and_report_two_models(tmp_path, llama_server):
    store = str(tmp_path / "s.sqlite")
    ids = []
    for model in ("local:smollm2-135m", llama_server.spec):
        result = openparity(
            "bench", "run", model, "mmlu", "--limit", "12", "--store", store, "--json"
        )
        assert result.returncode == 0, result.stderr
        ids.append(json.loads(result.stdout)["run_id"])
    compared = openparity("bench", "compare", ids[0], ids[1], "--store", store, "--format", "json")
    assert compared.returncode == 0, compared.stderr
    [task] = json.loads(compared.stdout)["tasks"]
    assert task["closed"]["model"] == llama_server.spec and task["difference"]["n"] == 12
    assert task["p_difference"] is not None and "Tango" in task["method"]
    md = openparity(
        "bench", "report", ids[0], "--against", ids[1], "--store", store, "--format", "markdown"
    )
    assert md.returncode == 0 and "| mmlu |" in md.stdout
    listed = openparity("bench", "runs", "--store", store, "--json")
    assert {r["run_id"] for r in json.loads(listed.stdout)} == set(ids)


@pytest.mark.slow
def test_ctrl_c_keeps_finished_items_and_says_how_to_resume(tmp_path):
    store = tmp_path / "s.sqlite"
    proc = subprocess.Popen(
        [
            *CLI,
            "bench",
            "run",
            "local:smollm2-135m",
            "gsm8k",
            "--limit",
            "30",
            "--max-tokens",
            "48",
            "--store",
            str(store),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=like_a_terminal,
    )
    deadline = time.monotonic() + 200  # a busy 2-core machine: the first answers can be slow
    saved = 0
    while time.monotonic() < deadline and saved < 2:
        time.sleep(0.3)
        try:
            with sqlite3.connect(store) as db:
                saved = db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        except sqlite3.OperationalError:
            pass
    assert saved >= 2, "two answers did not arrive before the interrupt"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stderr
    assert "interrupted: finished items are saved" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM records WHERE error IS NULL").fetchone()[0] >= 2


@pytest.mark.slow
def test_reading_commands_in_an_empty_folder_create_nothing(tmp_path):
    import subprocess as sp

    for args in (["bench", "runs"], ["bench", "compare", "a", "b"], ["bench", "report", "a"]):
        ran = sp.run([*CLI, *args], cwd=tmp_path, capture_output=True, text=True)
        assert ran.returncode == 2 and "no run store at .openparity/runs.sqlite" in ran.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_bad_inputs_are_one_line(tmp_path):
    from openparity.bench.store import RunStore

    RunStore(tmp_path / "s.sqlite").close()  # a store without the run asked for
    cases = [
        (["bench", "run", "local:smollm2-135m", "nope"], "unknown task 'nope'"),
        (
            ["bench", "compare", "missing-run", "--store", str(tmp_path / "s.sqlite")],
            "no run 'missing-run'",
        ),
        (
            [
                "gap",
                "--tasks",
                "gsm8k",
                "--target",
                "gsm8k:94",
                "--store",
                str(tmp_path / "s.sqlite"),
            ],
            "bad --target",
        ),
        (
            ["bench", "run", "local:smollm2-135m", "gsm8k", "--variant", "5-shot"],
            "no prompt variant '5-shot'",
        ),
    ]
    for args, fragment in cases:
        result = openparity(*args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], result.stderr


def stub_run(stub, task: str, store, *extra: str, model: str = "a"):
    return openparity(
        "bench",
        "run",
        f"openai:{model}@{stub.base_url}",
        task,
        "--limit",
        "2",
        "--store",
        str(store),
        *extra,
        timeout=120,
    )


@pytest.mark.slow
def test_bench_run_prints_the_score_with_its_interval(tmp_path, stub):
    stub.text = "The answer is (B)."
    shown = stub_run(stub, "mmlu", tmp_path / "s.sqlite")
    assert shown.returncode == 0, shown.stderr
    assert "accuracy" in shown.stdout and "95% CI" in shown.stdout and "2 items" in shown.stdout
    data = json.loads(stub_run(stub, "mmlu", tmp_path / "s.sqlite", "--json").stdout)
    low, high = data["ci95"]
    assert 0 <= low <= data["score"] <= high <= 1 and data["scored_items"] == 2


@pytest.mark.slow
def test_a_run_whose_scores_are_all_equal_says_why_it_has_no_interval(tmp_path, stub):
    """Every ticket misrouted, on items that share contexts (clusters, so no exact binomial
    interval): "0.0 (no interval: ...)", and JSON with null, never NaN."""
    from pathlib import Path

    stub.text = "no idea"
    task = str(Path(__file__).resolve().parents[2] / "examples/tasks/ticket-routing.yaml")
    shown = stub_run(stub, task, tmp_path / "s.sqlite", "--limit", "4")
    assert shown.returncode == 0, shown.stderr
    assert "no interval: every value is the same" in " ".join(shown.stdout.split())
    assert "nan" not in shown.stdout
    again = stub_run(stub, task, tmp_path / "s.sqlite", "--limit", "4", "--resume", "--json")
    data = json.loads(again.stdout)
    assert data["ci95"] is None and data["score"] == 0.0 and data["no_interval"]


@pytest.mark.slow
def test_resume_with_other_settings_lists_the_resumable_runs_instead_of_starting_one(
    tmp_path, stub
):
    store = tmp_path / "s.sqlite"
    stub.script({"status": 400})  # one item fails: the run stays incomplete
    first = stub_run(stub, "mmlu", store)
    assert first.returncode == 0 and "incomplete" in first.stdout
    wrong = openparity(
        "bench",
        "run",
        f"openai:a@{stub.base_url}",
        "mmlu",
        "--limit",
        "3",
        "--store",
        str(store),
        "--resume",
        timeout=120,
    )
    assert wrong.returncode == 2
    assert "no stored run of mmlu on" in wrong.stderr and "has these settings" in wrong.stderr
    assert f"--limit 2 --store {store} --resume" in wrong.stderr  # the exact command to run
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1  # nothing started
    resumed = stub_run(stub, "mmlu", store, "--resume")
    assert resumed.returncode == 0 and "complete" in resumed.stdout


@pytest.mark.slow
def test_report_refuses_a_second_run_of_one_task_instead_of_misreading_against(tmp_path, stub):
    store = tmp_path / "s.sqlite"
    ids = {}
    for model in ("open", "closed"):
        for task in ("mmlu", "gsm8k"):
            result = stub_run(stub, task, store, "--json", model=model)
            ids[model, task] = json.loads(result.stdout)["run_id"]
    opened, closed = (
        [ids["open", t] for t in ("mmlu", "gsm8k")],
        [ids["closed", t] for t in ("mmlu", "gsm8k")],
    )
    misread = openparity("bench", "report", *opened, "--against", *closed, "--store", str(store))
    assert misread.returncode == 2 and "two open runs of task" in misread.stderr
    assert "--against A,B,C" in misread.stderr
    one_flag = ["--against", ",".join(closed)]
    two_flags = ["--against", closed[0], "--against", closed[1]]
    for against in (one_flag, two_flags):
        report = openparity(
            "bench", "report", *opened, *against, "--store", str(store), "--format", "json"
        )
        assert report.returncode == 0, report.stderr
        tasks = json.loads(report.stdout)["tasks"]
        assert sorted(t["task"] for t in tasks) == ["gsm8k", "mmlu"]
        assert all(t["closed"]["model"].startswith("openai:closed@") for t in tasks)


@pytest.mark.slow
def test_tables_never_split_a_number_at_80_columns(tmp_path, stub):
    store = tmp_path / "s.sqlite"
    for task in ("mmlu", "gsm8k", "humaneval"):
        assert stub_run(stub, task, store).returncode == 0
    env = {**os.environ, "COLUMNS": "80"}
    runs = openparity("bench", "runs", "--store", str(store), env=env)
    assert runs.returncode == 0, runs.stderr
    lines = runs.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert any("run" in line and "status" in line and "score" in line for line in lines)
    rows = [line for line in lines if "local" in line or "-a-" in line]
    assert len(rows) == 3 and all("2/2" in row for row in rows)  # one row each, whole numbers
    listed = openparity("bench", "runs", "--store", str(store), "--json")
    ids = [r["run_id"] for r in json.loads(listed.stdout)]
    report = openparity("bench", "report", *ids, "--store", str(store), env=env)
    assert report.returncode == 0, report.stderr
    for word in ("equivalent", "inconclusive", "open worse", "open better"):
        for line in report.stdout.splitlines():  # a verdict is never cut across lines
            assert not (line.rstrip(" │").endswith(word[: len(word) // 2]) and word not in line)
    numbers = re.findall(r"[-+]?\d+\.\d+", report.stdout)
    assert numbers and all(len(line) <= 80 for line in report.stdout.splitlines())


@pytest.mark.slow
def test_task_names_are_case_insensitive_with_a_suggestion(tmp_path, stub):
    assert stub_run(stub, "MMLU", tmp_path / "s.sqlite").returncode == 0
    typo = stub_run(stub, "gsm8j", tmp_path / "s.sqlite")
    assert typo.returncode == 2 and "did you mean gsm8k?" in typo.stderr
