"""The three methods on a tiny model: the losses TRL must start from, resume = uninterrupted,
bad input refused with one line before anything is written."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from openparity.align import AlignError, AlignSettings, train
from openparity.align.training import check_output
from tests.align.conftest import chat_rows, write_jsonl


def settings(base: Path, out: Path, **changes) -> AlignSettings:
    """A tiny run in fp32: these tests compare runs to float tolerance, which bf16 autocast
    (auto's choice on CPUs with AVX512-BF16 or AMX) would loosen."""
    values = dict(
        method="sft",
        base=str(base),
        output=out,
        steps=4,
        batch_size=2,
        learning_rate=1e-3,
        decontaminate=(),
        max_length=64,
        save_steps=2,
        precision="fp32",
    )
    values.update(changes)
    return AlignSettings(**values)


def weights(checkpoint: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(checkpoint / "model.safetensors")


@pytest.mark.slow
def test_dpo_loss_is_ln2_at_step_zero_when_the_reference_is_the_policy(tiny_base, tmp_path):
    pairs = [
        {"prompt": f"Say {i}.", "chosen": f"{i}", "rejected": f"no {i} never"} for i in range(4)
    ]
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    result = train(settings(tiny_base, tmp_path / "dpo", method="dpo", data=data, steps=1))
    first = next(log for log in result.logs if "loss" in log)
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-5)


@pytest.mark.slow
def test_grpo_with_equal_rewards_has_zero_advantage_and_zero_loss(tiny_base, tmp_path):
    # A random tiny model never answers GSM8K right: every reward in each group is 0.0, from
    # the real GSM8K scorer, so every advantage is 0 and (with beta 0) so is the loss.
    result = train(
        settings(
            tiny_base,
            tmp_path / "grpo",
            method="grpo",
            task="gsm8k",
            items="0:2",
            steps=1,
            batch_size=2,
            generations=2,
            max_completion=8,
            beta=0.0,
        )
    )
    log = next(log for log in result.logs if "loss" in log)
    assert log["reward"] == 0.0 and log["reward_std"] == 0.0
    assert log["loss"] == 0.0
    assert result.reward_failures == {}


@pytest.mark.slow
def test_resume_after_an_interruption_ends_at_the_same_weights(tiny_base, tmp_path):
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(12))
    straight = train(settings(tiny_base, tmp_path / "straight", data=data))

    class Interrupted(Exception):
        pass

    def stop_at_three(step, total, log):
        if step == 3:
            raise Interrupted  # like Ctrl-C after the step-2 checkpoint: step 3 is lost

    run = settings(tiny_base, tmp_path / "resumed", data=data)
    with pytest.raises(Interrupted):
        train(run, progress=stop_at_three)
    assert not (run.output / "final").exists()
    resumed = train(run, resume=True)
    a, b = weights(straight.checkpoint), weights(resumed.checkpoint)
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] - b[name]).abs().max().item() <= 1e-6, name


@pytest.mark.slow
def test_ctrl_c_says_the_step_and_the_last_checkpoint_and_resume_says_what_it_continues(
    tiny_base, tmp_path
):
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(12))

    def ctrl_c_at(stop):
        def progress(step, total, log):
            if step == stop:
                raise KeyboardInterrupt

        return progress

    run = settings(tiny_base, tmp_path / "run", data=data)
    with pytest.raises(AlignError) as early:
        train(run, progress=ctrl_c_at(1))  # before the first checkpoint
    assert "interrupted at step 1" in early.value.message
    assert "last checkpoint: none" in early.value.message and "step 0" in early.value.hint
    said: list[str] = []
    with pytest.raises(AlignError) as later:
        train(run, resume=True, progress=ctrl_c_at(3), say=said.append)
    assert "stopped before its first checkpoint" in said[0]
    assert "last checkpoint: step 2" in later.value.message
    said.clear()
    train(run, resume=True, say=said.append)
    assert said == [f"resuming {run.output} from checkpoint-2 (step 2)"]


@pytest.mark.slow
def test_bf16_trains_under_autocast_and_stays_close_to_fp32(tiny_base, tmp_path):
    """--precision bf16 really changes the arithmetic (the losses differ from fp32's), trains
    to nearly the same losses, and saves fp32 weights that transformers loads as before."""
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(8))
    runs = {
        p: train(settings(tiny_base, tmp_path / p, data=data, steps=2, precision=p))
        for p in ("fp32", "bf16")
    }
    losses = {p: [log["loss"] for log in run.logs if "loss" in log] for p, run in runs.items()}
    assert losses["bf16"] != losses["fp32"]
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.02)
    saved = weights(runs["bf16"].checkpoint)
    assert {tensor.dtype for tensor in saved.values()} == {
        tensor.dtype for tensor in weights(runs["fp32"].checkpoint).values()
    }
    with pytest.raises(AlignError, match="--precision 'fp16'"):
        train(settings(tiny_base, tmp_path / "bad", data=data, precision="fp16"))


def test_lora_keeps_its_frozen_base_in_bf16_and_computes_what_autocast_computes(tiny_base):
    """Stored in bf16, the frozen linears give the same loss and the same adapter gradients as
    fp32 weights that autocast rounds on every pass: the memory goes, the arithmetic stays."""
    import peft
    import torch

    from openparity.align.trainers import lora_config, store_frozen_linears_in_bf16
    from openparity.models.hf_backend import load_hf_model

    models = []
    for to_bf16 in (False, True):
        model, _ = load_hf_model(str(tiny_base))
        if to_bf16:
            store_frozen_linears_in_bf16(model, torch)
        torch.manual_seed(1)
        models.append(peft.get_peft_model(model, lora_config(settings(tiny_base, Path("x")))))
    stored = {n: p.dtype for n, p in models[1].named_parameters()}
    assert stored["base_model.model.model.layers.0.mlp.up_proj.base_layer.weight"] == torch.bfloat16
    assert stored["base_model.model.model.embed_tokens.weight"] == torch.float32
    assert stored["base_model.model.model.layers.0.mlp.up_proj.lora_A.default.weight"] == (
        torch.float32
    )
    ids = torch.randint(0, 1000, (2, 24), generator=torch.Generator().manual_seed(2))
    losses, grads = [], []
    for model in models:
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    assert losses[0] == losses[1]
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        assert torch.equal(grad, grads[1][name]), name


@pytest.mark.slow
def test_a_bf16_lora_run_merges_onto_the_full_precision_base(tiny_base, tmp_path):
    """The adapters of a run whose base was stored in bf16 are merged into the original fp32
    weights: final = base + scale * B @ A, to float precision (merged into bf16, the update
    would be rounded to the bf16 grid, ~1e-3 of each weight)."""
    import peft
    import torch
    from safetensors.torch import load_file

    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(8))
    run = train(settings(tiny_base, tmp_path / "run", data=data, steps=2, precision="bf16"))
    final, base = weights(run.checkpoint), weights(tiny_base)
    adapter = load_file(tmp_path / "run/checkpoints/checkpoint-2/adapter_model.safetensors")
    config = peft.LoraConfig.from_pretrained(tmp_path / "run/checkpoints/checkpoint-2")
    name = "model.layers.1.mlp.down_proj"
    a, b = (adapter[f"base_model.model.{name}.lora_{x}.weight"] for x in "AB")
    delta = (b @ a) * (config.lora_alpha / config.r)
    assert final[f"{name}.weight"].dtype == torch.float32
    assert delta.abs().max() > 0
    torch.testing.assert_close(
        final[f"{name}.weight"] - base[f"{name}.weight"], delta, atol=1e-6, rtol=1e-4
    )
    assert torch.equal(final["model.embed_tokens.weight"], base["model.embed_tokens.weight"])


def test_auto_precision_is_bf16_only_where_the_hardware_computes_it():
    import torch

    from openparity.align.trainers import uses_bf16

    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert uses_bf16("auto", torch) == (
        torch.cuda.is_bf16_supported() if torch.cuda.is_available() else native
    )
    assert uses_bf16("bf16", torch) and not uses_bf16("fp32", torch)


def test_a_finished_run_is_not_overwritten_and_resume_must_match(tiny_base, tmp_path):
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(4))
    run = settings(tiny_base, tmp_path / "run", data=data, steps=1)
    train(run)
    with pytest.raises(AlignError, match="already holds a training run"):
        train(run)
    with pytest.raises(AlignError, match=r"other settings.*learning_rate"):
        train(settings(tiny_base, run.output, data=data, steps=1, learning_rate=0.5), resume=True)
    with pytest.raises(AlignError, match="nothing to resume"):
        train(settings(tiny_base, tmp_path / "new", data=data), resume=True)
    # a run saved before a setting existed resumes with that setting's default
    saved = run.output / "settings.json"
    before = json.loads(saved.read_text())
    del before["precision"]
    saved.write_text(json.dumps(before))
    assert check_output(replace(run, precision="auto"), resume=True) is not None
    with pytest.raises(AlignError, match=r"other settings.*precision"):
        check_output(run, resume=True)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"messages": [{"role": "user", "content": "hi"}]}'], "assistant turn"),
        (['{"messages": []}', "{not json"], r"chat.jsonl:2: not JSON"),
        (["[1, 2]"], "not a JSON object"),
        ([""], "has no records"),
    ],
)
def test_bad_sft_data_is_one_clear_error_and_writes_nothing(tiny_base, tmp_path, lines, message):
    data = tmp_path / "chat.jsonl"
    data.write_text("\n".join(lines) + "\n", "utf-8")
    out = tmp_path / "run"
    with pytest.raises(AlignError, match=message):
        train(settings(tiny_base, out, data=data))
    assert not out.exists()


def test_decontamination_drops_a_record_that_contains_an_evaluation_item(tmp_path):
    from openparity.align.examples import sft_examples
    from openparity.bench.tasks import get_task
    from openparity.data.decontam import BenchmarkIndex

    question = get_task("gsm8k").items()[5].input["question"]
    rows = [*chat_rows(3), {"prompt": f"Please solve: {question}", "response": "#### 1"}]
    examples = sft_examples(
        write_jsonl(tmp_path / "d.jsonl", rows), BenchmarkIndex.from_benchmarks(("gsm8k",))
    )
    assert len(examples.rows) == 3
    assert examples.dropped == {"contaminated": 1}
    assert list(examples.items_hit) == ["gsm8k/gsm8k/5"]
    assert "1 contaminated left out" in examples.summary()


def test_the_checkpoint_opens_as_an_hf_model_and_says_where_it_came_from(tiny_base, tmp_path):
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(4))
    result = train(settings(tiny_base, tmp_path / "run", data=data, steps=1, lora_r=4))
    meta = json.loads((result.checkpoint / "openparity-align.json").read_text())
    assert meta["method"] == "sft" and meta["base"] == str(tiny_base)
    assert not (result.checkpoint / "adapter_config.json").exists()  # LoRA merged
    assert (result.checkpoint / "config.json").is_file()


def sft_run(tiny_base: Path, data: Path, out: Path, *extra: str) -> tuple[list[float], dict]:
    """`openparity align sft` as a subprocess, 3 steps of global batch 4: losses and weights."""
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "openparity.cli",
            "align",
            "sft",
            "--data",
            str(data),
            "--base",
            str(tiny_base),
            "-o",
            str(out),
            "--steps",
            "3",
            "--batch-size",
            "4",
            "--lr",
            "1e-3",
            "--decontaminate",
            "",
            "--max-length",
            "64",
            "--save-steps",
            "3",
            "--precision",
            "fp32",
            "--json",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, _why(done.stderr)
    summary = json.loads(done.stdout)  # nothing but the result on stdout
    state = json.loads((out / "checkpoints/checkpoint-3/trainer_state.json").read_text())
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    return losses, {"processes": summary["processes"], **weights(out / "final")}


def _why(stderr: str) -> str:
    """A failed launch's error lines (a rank's own error comes long before the launcher's
    summary), then the end of its stderr."""
    errors = [
        line
        for line in stderr.splitlines()
        if any(w in line for w in ("Error", "error:", "terminate called", "what()", "Abort"))
    ]
    return "\n".join(errors[:20]) + "\n...\n" + stderr[-1500:]


@pytest.mark.parametrize(
    "launch",
    [
        ("--lora-r", "0", "--processes", "2"),
        ("--lora-r", "0", "--processes", "2", "--deepspeed", "zero2"),
        ("--lora-r", "4", "--processes", "2", "--deepspeed", "zero3"),
    ],
    ids=["ddp", "zero2", "zero3-lora"],
)
@pytest.mark.slow
def test_two_processes_end_where_one_process_ends(tiny_base, tmp_path, launch):
    """Two processes (torch.distributed, gloo on CPU; DeepSpeed ZeRO-2 / ZeRO-3 sharding) with
    the same global batch and seed: the same examples per step, the same losses and, within
    float tolerance, the same weights as one plain process. ZeRO-3's shards are gathered for
    the merged, saved checkpoint."""
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(16))
    lora = launch[:2]
    loss_1, w_1 = sft_run(tiny_base, data, tmp_path / "one", *lora)
    loss_2, w_2 = sft_run(tiny_base, data, tmp_path / "two", *launch)
    assert (w_1.pop("processes"), w_2.pop("processes")) == (1, 2)
    assert loss_2 == pytest.approx(loss_1, abs=1e-5)
    assert set(w_1) == set(w_2)
    for name in w_1:
        assert w_1[name].shape == w_2[name].shape, name  # ZeRO-3: not a rank's empty shard
        assert (w_1[name] - w_2[name]).abs().max().item() <= 1e-5, name


@pytest.mark.slow
def test_a_zero3_lora_run_in_bf16_merges_onto_a_full_base(tiny_base, tmp_path):
    """Under bf16 the LoRA merge loads a fresh full-precision base on rank 0. With ZeRO-3
    configured, transformers loaded it under zero.Init, a broadcast rank 1 never joined: the
    README's ZeRO-3 line died at the end of training with "Connection closed by peer"."""
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(8))
    _, trained = sft_run(
        tiny_base,
        data,
        tmp_path / "run",
        "--lora-r",
        "4",
        "--processes",
        "2",
        "--deepspeed",
        "zero3",
        "--precision",
        "bf16",
    )
    assert trained.pop("processes") == 2
    base = weights(tiny_base)
    assert set(trained) == set(base)
    assert all(trained[n].shape == base[n].shape for n in base)  # whole tensors, not shards
    assert any((trained[n].float() - base[n].float()).abs().max() > 0 for n in base)


@pytest.mark.slow
def test_a_failing_two_process_run_ends_with_its_one_error_line(tiny_base, tmp_path):
    """Both processes fail on bad data: the user saw the error twice, the launcher's thread
    banner, its log lines and its own Python traceback, and exit status 1."""
    from tests.cli import openparity

    data = tmp_path / "chat.jsonl"
    data.write_text('{"messages": []}\n{not json\n', "utf-8")
    shown = openparity(
        "align",
        "sft",
        "--data",
        str(data),
        "--base",
        str(tiny_base),
        "-o",
        str(tmp_path / "o"),
        "--processes",
        "2",
        timeout=600,
    )
    assert shown.returncode == 2, shown.stderr
    errors = [line for line in shown.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "chat.jsonl:2: not JSON" in errors[0], shown.stderr
    for noise in ("Traceback", "torch/distributed", "OMP_NUM_THREADS", "*****"):
        assert noise not in shown.stderr, (noise, shown.stderr)
    assert not (tmp_path / "o").exists()


def test_a_bad_deepspeed_choice_is_one_line_before_any_launch(tiny_base, tmp_path):
    from tests.cli import openparity

    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(4))
    (tmp_path / "x.json").write_text("{not json")
    for choice, message in (
        ("zero4", "no such preset or file"),
        (str(tmp_path / "x.json"), "not a JSON file"),
    ):
        shown = openparity(
            "align",
            "sft",
            "--data",
            str(data),
            "--base",
            str(tiny_base),
            "-o",
            str(tmp_path / "o"),
            "--deepspeed",
            choice,
        )
        assert shown.returncode == 2 and message in shown.stderr, shown.stderr
        assert "Traceback" not in shown.stderr and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_logged_run_has_one_progress_line_and_no_library_noise(tiny_base, tmp_path):
    """Into a log file (not a terminal), `align sft` wrote every library progress-bar update
    ("Loading weights ... it/s", "Tokenizing train dataset"), DeepSpeed's accelerator notice
    and two-line FutureWarnings between its own lines."""
    from tests.cli import openparity

    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(8))
    shown = openparity(
        "align",
        "sft",
        "--data",
        str(data),
        "--base",
        str(tiny_base),
        "-o",
        str(tmp_path / "o"),
        "--steps",
        "2",
        "--decontaminate",
        "",
        timeout=600,
    )
    assert shown.returncode == 0, shown.stderr
    for noise in (
        "it/s",
        "examples/s",
        "Loading weights",
        "Tokenizing",
        "FutureWarning",
        "[WARNING]",
        "warnings.warn",
        "Writing model shards",
    ):
        assert noise not in shown.stderr, (noise, shown.stderr)
    bars = [line for line in shown.stderr.splitlines() if line.startswith("align sft")]
    assert len(bars) == 1 and "2/2" in bars[0], shown.stderr
    assert "checkpoint:" in shown.stdout


@pytest.mark.slow
def test_kill_9_then_resume_ends_at_the_uninterrupted_weights(tiny_base, tmp_path):
    """A real process killed with SIGKILL mid-run (possibly mid-save), then `--resume`."""
    import signal
    import subprocess
    import sys
    import time

    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(16))

    def command(out: Path, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "openparity.cli",
            "align",
            "sft",
            "--data",
            str(data),
            "--base",
            str(tiny_base),
            "-o",
            str(out),
            "--steps",
            "60",
            "--batch-size",
            "2",
            "--lr",
            "1e-3",
            "--decontaminate",
            "",
            "--max-length",
            "64",
            "--lora-r",
            "0",
            "--save-steps",
            "5",
            "--precision",
            "fp32",
            *extra,
        ]

    straight = tmp_path / "straight"
    subprocess.run(command(straight), check=True, capture_output=True, timeout=300)
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    while not (killed / "checkpoints/checkpoint-10/trainer_state.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint-10"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "final").exists()
    # a save cut off by the kill: weights but no trainer_state.json; resume must skip it
    (killed / "checkpoints/checkpoint-59").mkdir()
    (killed / "checkpoints/checkpoint-59/model.safetensors").write_bytes(b"partial")
    subprocess.run(command(killed, "--resume"), check=True, capture_output=True, timeout=300)
    a, b = weights(straight / "final"), weights(killed / "final")
    for name in a:
        assert (a[name] - b[name]).abs().max().item() <= 1e-6, name


def test_curriculum_orders_examples_by_the_base_models_measured_difficulty(tmp_path):
    """The base model's per-item results in a real run store order the examples, easiest
    first; unscored examples go last and are counted; a run that scored none is refused."""
    from openparity.align.curriculum import Curriculum
    from openparity.align.examples import sft_examples
    from openparity.bench.store import Record, RunInfo, RunStore

    rows = [{**row, "id": f"q{i}"} for i, row in enumerate(chat_rows(5))]
    examples = sft_examples(write_jsonl(tmp_path / "d.jsonl", rows), None)
    store_path = tmp_path / "runs.sqlite"
    store = RunStore(store_path)
    run = RunInfo("base-run", "local:smollm2-135m", "t", {"samples": 2}, [], "t", False, "acc", 0)
    store.create_run(run)
    # q3: never scored; a custom task's ids carry its name
    solved = {"q0": (0, 0), "q1": (1, 1), "t/q2": (1, 0), "t/q4": (0, 1)}
    for item, results in solved.items():
        for sample, score in enumerate(results):
            store.put(Record("base-run", item, sample, "h", score=float(score)))
    store.close()
    ordered = Curriculum("base-run", store_path).order(examples, seed=0)
    assert ordered.ids[0] == "q1" and set(ordered.ids[1:3]) == {"q2", "q4"}
    assert ordered.ids[3:] == ["q0", "q3"]
    assert [r["completion"] for r in ordered.rows] == [
        examples.rows[examples.ids.index(i)]["completion"] for i in ordered.ids
    ]
    assert ordered.dropped == {"unscored by the curriculum run (placed last)": 1}
    other = sft_examples(write_jsonl(tmp_path / "e.jsonl", chat_rows(2)), None)
    with pytest.raises(AlignError, match="scored none"):
        Curriculum("base-run", store_path).order(other, seed=0)
    with pytest.raises(AlignError, match="no run store"):
        Curriculum("base-run", tmp_path / "none.sqlite").order(examples, seed=0)


def test_a_curriculum_run_trains_in_that_order(tiny_base, tmp_path):
    from openparity.align.trainers import build
    from openparity.bench.store import Record, RunInfo, RunStore

    rows = [{**row, "id": f"q{i}"} for i, row in enumerate(chat_rows(6))]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    store = RunStore(tmp_path / "runs.sqlite")
    store.create_run(RunInfo("base", "m", "t", {}, [], "t", False, "acc", 0))
    for i in range(6):
        store.put(Record("base", f"q{i}", 0, "h", score=float(i % 2)))
    store.close()
    run = build(
        settings(
            tiny_base,
            tmp_path / "run",
            data=data,
            curriculum="base",
            store=tmp_path / "runs.sqlite",
        )
    )
    order = [run.trainer.train_dataset[k] for k in iter(run.trainer._get_train_sampler())]
    assert run.examples.ids[:3] and set(run.examples.ids[:3]) == {"q1", "q3", "q5"}
    first = [run.trainer.train_dataset[k]["input_ids"] for k in range(len(order))]
    assert [o["input_ids"] for o in order] == first  # sequential: the curriculum's order


@pytest.mark.slow
def test_a_grpo_run_on_a_reward_with_a_planted_hole_is_stopped_by_its_canaries(
    tiny_base, tmp_path, monkeypatch
):
    """The same short GRPO run on MBPP twice. With the real scorer the random model passes
    nothing, canaries included, and the run finishes saying so. With a planted hole (a scorer
    that forgot to run the tests, so everything passes) the canaries pass and the run stops
    with one line naming the hack, before it can train on it."""
    import openparity.bench.tasks as tasks
    from openparity.align.rewards import RewardHackingError
    from openparity.bench.task import Score
    from openparity.bench.tasks.mbpp import MBPP

    run = dict(
        method="grpo",
        task="mbpp",
        items="0:8",
        steps=4,
        batch_size=4,
        generations=2,
        max_completion=8,
        beta=0.0,
        canaries=1.0,
        hack_stop=0.2,
    )
    honest = train(settings(tiny_base, tmp_path / "honest", **run))
    assert honest.rewards["canaries_scored"] >= 2 and honest.rewards["canaries_passed"] == 0

    class ForgotTheTests(MBPP):
        async def score(self, item, response):
            return Score(1.0, response, detail="no tests were run")

    real = tasks.get_task
    monkeypatch.setattr(
        tasks,
        "get_task",
        lambda name, **kw: ForgotTheTests() if name == "mbpp" else real(name, **kw),
    )
    holed = settings(tiny_base, tmp_path / "holed", **{**run, "steps": 12})
    with pytest.raises(RewardHackingError) as stopped:
        train(holed)
    assert "canaries passed" in stopped.value.one_line()
    assert "no tests were run" in stopped.value.one_line()
    assert not (holed.output / "final").exists()
