"""The harness commands as a user runs them (real subprocesses, the embedded model)."""

import json
import signal
import sqlite3
import subprocess
import time

from tests.cli import CLI, openparity


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
    assert task["p_mcnemar"] is not None
    md = openparity(
        "bench", "report", ids[0], "--against", ids[1], "--store", store, "--format", "markdown"
    )
    assert md.returncode == 0 and "| mmlu |" in md.stdout
    listed = openparity("bench", "runs", "--store", store, "--json")
    assert {r["run_id"] for r in json.loads(listed.stdout)} == set(ids)


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
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.3)
        try:
            with sqlite3.connect(store) as db:
                if db.execute("SELECT COUNT(*) FROM records").fetchone()[0] >= 2:
                    break
        except sqlite3.OperationalError:
            pass
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stderr
    assert "interrupted: finished items are saved" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM records WHERE error IS NULL").fetchone()[0] >= 2


def test_bad_inputs_are_one_line(tmp_path):
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
