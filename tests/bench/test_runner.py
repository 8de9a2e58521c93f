"""Runs: records as items finish, errors never scored, resume after kill -9 loses nothing."""

import json
import os
import signal
import sqlite3
import subprocess
import time

import pytest

from openparity.bench.errors import RunStoreError
from openparity.bench.runner import run_task
from openparity.bench.store import RunStore
from openparity.bench.tasks import get_task
from openparity.models import open_model
from openparity.models.spec import parse_spec, with_overrides
from tests.cli import CLI, openparity


@pytest.fixture
def math_task(tmp_path):
    data = tmp_path / "math.jsonl"
    rows = [
        {"question": f"What is {i} + {i}?", "answer": f"{i}+{i}={2 * i}\n#### {2 * i}"}
        for i in range(6)
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return get_task("gsm8k", data=data)


def stub_model(stub, retries=0):
    return open_model(
        with_overrides(parse_spec(f"openai:stub@{stub.base_url}"), max_retries=retries)
    )


async def test_records_scores_and_cache(stub, tmp_path, math_task):
    stub.text = "The answer is 4."
    with RunStore(tmp_path / "runs.sqlite") as store:
        async with stub_model(stub) as model:
            summary = await run_task(model, math_task, store)
        assert (summary.total, summary.done, summary.errors) == (6, 6, 0)
        records = store.records(summary.run.run_id)
        assert [r.score for r in records if r.item_id == "gsm8k/2"] == [1.0]  # 2 + 2 = 4
        assert sum(r.score for r in records) == 1.0
        assert all(r.extracted == "4" and r.prompt_tokens > 0 for r in records)
        asked = len(stub.requests)
        async with stub_model(stub) as model:  # same run again: complete, nothing re-asked
            again = await run_task(model, math_task, store)
        assert again.done == 6 and len(stub.requests) == asked


async def test_failed_requests_are_errors_not_wrong_answers_and_resume_retries_them(
    stub, tmp_path, math_task
):
    stub.text = "The answer is 0."
    stub.script(*[{"status": 400}] * 2)
    with RunStore(tmp_path / "runs.sqlite") as store:
        async with stub_model(stub) as model:
            first = await run_task(model, math_task, store, concurrency=1)
        assert (first.done, first.errors, first.run.status) == (4, 2, "incomplete")
        errors = [r for r in store.records(first.run.run_id) if r.error]
        assert len(errors) == 2 and all(r.score is None for r in errors)
        assert "HTTP 400" in errors[0].error
        with pytest.raises(RunStoreError, match="--resume"):
            async with stub_model(stub) as model:
                await run_task(model, math_task, store)
        async with stub_model(stub) as model:
            second = await run_task(model, math_task, store, resume=True)
        assert (second.done, second.errors, second.run.status) == (6, 0, "complete")
        records = store.records(first.run.run_id)
        assert len(records) == 6 and all(r.error is None for r in records)


async def test_cached_responses_are_reused_across_runs(stub, tmp_path, math_task):
    stub.text = "The answer is 2."
    with RunStore(tmp_path / "runs.sqlite") as store:
        async with stub_model(stub) as model:
            await run_task(model, math_task, store, limit=3)
            asked = len(stub.requests)
            bigger = await run_task(model, math_task, store, limit=6)
        assert bigger.from_cache >= 1 and len(stub.requests) - asked == 6 - bigger.from_cache


def test_store_errors_are_clear(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunStoreError, match="cannot open the run store"):
        RunStore(blocker / "runs.sqlite")
    with (
        RunStore(tmp_path / "ok.sqlite") as store,
        pytest.raises(RunStoreError, match="no run 'nope'"),
    ):
        store.get_run("nope")


def _scores(path, run_id=None):
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT run_id, item_id, sample, score, response FROM records ORDER BY item_id"
        ).fetchall()
    return rows


@pytest.mark.slow
def test_kill_9_then_resume_loses_and_duplicates_nothing(tmp_path):
    """A real run on the embedded model, killed with SIGKILL mid-way, then resumed."""
    args = ["bench", "run", "local:smollm2-135m", "gsm8k", "--limit", "6", "--max-tokens", "24"]
    killed_store, clean_store = tmp_path / "killed.sqlite", tmp_path / "clean.sqlite"
    proc = subprocess.Popen(
        [*CLI, *args, "--store", str(killed_store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if killed_store.exists():
            try:
                done = len(_scores(killed_store))
            except sqlite3.OperationalError:
                continue
            if done >= 2:
                break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= done < 6, f"the run was not caught mid-way ({done} records)"
    listed = openparity("bench", "runs", "--store", str(killed_store), "--json", timeout=60)
    assert [r["status"] for r in json.loads(listed.stdout)] == ["interrupted"]  # not "running"
    before = _scores(killed_store)
    resumed = openparity(*args, "--store", str(killed_store), "--resume", "--json", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert (summary["done"], summary["total"], summary["status"]) == (6, 6, "complete")
    after = _scores(killed_store)
    assert len(after) == 6 and len({(r[1], r[2]) for r in after}) == 6  # none lost, none twice
    assert set(before) <= set(after)  # finished work was kept as it was
    clean = openparity(*args, "--store", str(clean_store), "--json", timeout=300)
    assert clean.returncode == 0, clean.stderr
    assert [(r[1], r[3], r[4]) for r in after] == [(r[1], r[3], r[4]) for r in _scores(clean_store)]


@pytest.mark.slow
def test_unresumed_rerun_of_a_stopped_run_is_refused(tmp_path, stub):
    store = tmp_path / "s.sqlite"
    stub.script({"status": 400})
    args = [
        "bench",
        "run",
        f"openai:stub@{stub.base_url}",
        "mmlu",
        "--limit",
        "2",
        "--store",
        str(store),
    ]
    first = openparity(*args, timeout=60)
    assert first.returncode == 0 and "1 errors" in first.stdout
    second = openparity(*args, timeout=60)
    assert second.returncode == 2 and "pass --resume" in second.stderr


async def test_samples_give_unbiased_pass_at_k(stub, tmp_path):
    from openparity.bench.baselines import Published
    from openparity.bench.comparison import compare_to_target, load_scores
    from openparity.bench.gap_report import build_report
    from openparity.bench.task import PromptSettings

    # concurrency 1: item 0 samples 0-2, then item 1 samples 0-2 (answers 0 and 2)
    stub.script(
        {"text": "The answer is 0."},
        {"text": "The answer is 7."},
        {"text": "no idea"},
        *[{"text": "The answer is 9."}] * 3,
    )
    settings = PromptSettings(variant="zero-shot-cot", max_tokens=64, temperature=0.8, samples=3)
    data = tmp_path / "two.jsonl"
    data.write_text(
        '{"question": "0+0?", "answer": "#### 0"}\n{"question": "1+1?", "answer": "#### 2"}\n'
    )
    math_task = get_task("gsm8k", data=data)
    with RunStore(tmp_path / "runs.sqlite") as store:
        async with stub_model(stub) as model:
            summary = await run_task(
                model, math_task, store, settings=settings, limit=2, concurrency=1
            )
        assert summary.total == 6 and summary.done == 6
        scores = load_scores(store, summary.run.run_id)
        assert scores.samples == {"gsm8k/0": (3, 1), "gsm8k/1": (3, 0)}
        assert scores.pass_at_k() == pytest.approx({1: 1 / 6, 2: 1 / 3})
        seeds = sorted(r["body"].get("seed") for r in stub.requests)
        assert seeds == [0, 0, 1, 1, 2, 2]  # each sample is its own (cacheable) request
        report = build_report([compare_to_target(store, summary.run.run_id, Published(0.5, "t"))])
    assert any("pass@2 33.3" in note for note in report.notes)


@pytest.mark.slow
async def test_mmlu_log_likelihood_variant_on_the_local_model(tmp_path):
    from openparity.bench.baselines import Published
    from openparity.bench.comparison import compare_to_target
    from openparity.bench.gap_report import build_report
    from openparity.bench.task import PromptSettings

    task = get_task("mmlu")
    settings = PromptSettings(variant="loglikelihood", max_tokens=1)
    with RunStore(tmp_path / "runs.sqlite") as store:
        async with open_model("local:smollm2-135m") as model:
            summary = await run_task(model, task, store, settings=settings, limit=12)
        assert summary.done == 12 and summary.run.metric == "accuracy (log-likelihood)"
        records = store.records(summary.run.run_id)
        assert {r.extracted for r in records} <= set("ABCD")
        assert all(len(json.loads(r.response)) == 4 for r in records)
        report = build_report([compare_to_target(store, summary.run.run_id, Published(0.885, "t"))])
    assert any("not comparable with generative scores" in n for n in report.notes)


async def test_log_likelihood_on_a_chat_only_server_stops_with_a_clear_error(stub, tmp_path):
    from openparity.bench.task import PromptSettings
    from openparity.models.errors import UnsupportedCapabilityError

    stub.script(*[{"status": 404}] * 4)  # a chat-only API has no /completions
    settings = PromptSettings(variant="loglikelihood", max_tokens=1)
    with RunStore(tmp_path / "runs.sqlite") as store:
        async with stub_model(stub) as model:
            with pytest.raises(UnsupportedCapabilityError, match="did not return prompt logprobs"):
                await run_task(model, get_task("mmlu"), store, settings=settings, limit=1)
