"""`federated compare` runs every arm on the same held-out items and compares them paired."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.cli import openparity
from tests.federated.conftest import alliance_records, write_heldout_task, write_jsonl


@pytest.mark.timeout(900)  # eight arms trained and scored, then two reruns: about 4 min here
@pytest.mark.slow
def test_compare_scores_every_arm_on_the_same_items_and_resumes(tmp_path, tiny_base):
    data = write_jsonl(tmp_path / "all.jsonl", alliance_records(36))
    task = write_heldout_task(tmp_path, 8)
    likelihood = tmp_path / "reference.yaml"  # a second metric on the same held-out items
    likelihood.write_text(
        task.read_text().split("scorer:")[0].replace("doubling-format", "doubling-reference")
        + "scorer: {type: reference_likelihood}\n"
    )
    args = [
        "federated",
        "compare",
        "--data",
        str(data),
        "--members",
        "3",
        "--split",
        "topic",
        "--base",
        str(tiny_base),
        "-o",
        str(tmp_path / "cmp"),
        "--rounds",
        "1",
        "--local-steps",
        "1",
        "--lora-r",
        "4",
        "--decontaminate",
        "",
        "--eval-task",
        str(task),
        "--also-eval",
        str(likelihood),
        "--alliance",
        "fedavgm",
        "--server-step",
        "2",
        "--json",
    ]
    result = openparity(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    names = [arm["arm"] for arm in report["arms"]]
    assert names == [
        "base",
        "fedavg",
        "fedprox",
        "fedavgm",
        "central",
        "member 0 alone",
        "member 1 alone",
        "member 2 alone",
    ]
    assert report["alliance"] == "fedavgm"
    assert all(arm["n"] == 8 for arm in report["arms"])  # the same held-out items for every arm
    steps = {arm["arm"]: arm["steps"] for arm in report["arms"]}
    assert steps["fedavg"] == steps["central"] == 3 and steps["member 0 alone"] == 1
    for arm in report["arms"]:
        if arm["arm"] != "fedavgm":
            versus = arm["alliance_minus_this"]
            assert versus["n"] == 8 and versus["low"] <= versus["diff"] <= versus["high"]
    assert report["arms"][1]["bytes_per_round"] > 0  # the alliance's traffic is counted
    [second] = report["also"]
    assert second["metric"] == "per-token probability of the reference reply"
    assert [arm["arm"] for arm in second["arms"]] == names
    assert all(arm["n"] == 8 and 0 < arm["score"] < 1 for arm in second["arms"])
    scored = {arm["arm"]: arm["score"] for arm in second["arms"]}
    assert scored["fedavg"] != scored["base"]  # training moved it
    for arm in second["arms"]:
        if arm["arm"] != "fedavgm":
            versus = arm["alliance_minus_this"]
            assert versus["n"] == 8 and versus["method"].startswith(
                ("t with Hall's skewness correction", "t, too skewed for n", "t, no spread")
            )
            assert versus["diff"] == pytest.approx(scored["fedavgm"] - scored[arm["arm"]])
    # FedAvgM's global update is --server-step times FedAvg's (LoRA's B starts at zero)
    plain, stepped = (
        load_file(tmp_path / "cmp" / arm / "final" / "adapter_model.safetensors")
        for arm in ("fedavg", "fedavgm")
    )
    lora_b = [name for name in plain if "lora_B" in name]
    assert lora_b and all(plain[name].abs().max() > 0 for name in lora_b)
    for name in lora_b:
        torch.testing.assert_close(stepped[name], 2 * plain[name], rtol=1e-4, atol=1e-8)
    assert (tmp_path / "cmp" / "compare.json").is_file()
    trained = tmp_path / "cmp" / "central" / "adapter_model.safetensors"
    before = trained.stat().st_mtime_ns
    again = openparity(*args, cwd=tmp_path)  # every arm is already done: only re-scored
    assert again.returncode == 0, again.stderr[-3000:]
    assert trained.stat().st_mtime_ns == before
    assert json.loads(again.stdout)["arms"] == report["arms"]

    # arms left by a run with other settings are refused in one line, before anything trains
    other = openparity(*args, "--lr", "1e-3", cwd=tmp_path)
    assert other.returncode != 0 and "other settings (learning-rate)" in other.stderr
    arm_file = tmp_path / "cmp" / "member-1-alone" / "arm.json"
    saved = json.loads(arm_file.read_text())
    arm_file.write_text(json.dumps({**saved, "max_length": 64}))
    moved = openparity(*args, cwd=tmp_path)
    assert moved.returncode != 0 and "member-1-alone holds an arm trained" in moved.stderr
    assert "(max_length)" in moved.stderr and trained.stat().st_mtime_ns == before
    arm_file.write_text(json.dumps(saved))

    # an alliance arm whose round was skipped is no measure of the alliance: refused
    history_path = tmp_path / "cmp" / "fedavg" / "history.json"
    history = json.loads(history_path.read_text())
    history[1].update(skipped=True, failed=["no reply within the round timeout (600 s)"] * 3)
    history_path.write_text(json.dumps(history))
    refused = openparity(*args, cwd=tmp_path)
    assert refused.returncode != 0 and "round 1 was skipped" in refused.stderr

    # a metric task that cannot be read stops the command before anything is trained or written
    typo = openparity(
        *args[:-1],
        "--also-eval",
        str(tmp_path / "nope.yaml"),
        "-o",
        str(tmp_path / "other"),
        cwd=tmp_path,
    )
    assert typo.returncode != 0 and "task file not found" in typo.stderr
    assert not (tmp_path / "other").exists()


def test_the_alliance_is_compared_with_each_arm_by_cluster():
    """Items sharing a context move together: 6 of 10 stories the alliance gets right and the
    member wrong, 4 the other way. Item by item that is 120 against 80 ("beats", p < 0.01);
    by story it is 6 against 4, which shows nothing. `compare` must count stories."""
    from openparity.bench.comparison import RunScores
    from openparity.bench.store import RunInfo
    from openparity.federated.compare_arms import ArmResult, _table

    ids = [f"s{story}/q{q}" for story in range(10) for q in range(20)]
    clusters = {i: i.split("/")[0] for i in ids}

    def arm(name: str, right_in: set[int]) -> ArmResult:
        run = RunInfo(name, name, "gsm8k", {}, ids, "sim", False, "accuracy", 0.012)
        scores = {i: float(int(i[1]) in right_in) for i in ids}
        return ArmResult(name, name, 1, 1, 0, {"gsm8k": RunScores(run, scores, clusters, 0, 0)})

    arms = [arm("alliance", set(range(6))), arm("member-0 alone", set(range(6, 10)))]
    table = _table("gsm8k", "alliance", arms)
    versus = table["arms"][1]["alliance_minus_this"]
    assert "CR2" in versus["method"] and versus["low"] <= 0
    assert not table["alliance_beats_every_member_alone"]
