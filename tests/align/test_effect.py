"""A real effect on the real model, measured the way every gap is: a short LoRA SFT of the
embedded SmolLM2-135M-Instruct on GSM8K solutions (which end in "#### N") raises its held-out
format compliance, paired score-test p < 0.05; the exported GGUF gives the HF checkpoint's
greedy tokens; `openparity gap --base` reports it, with MMLU as the regression guard. About six
CPU minutes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from openparity.align import AlignSettings, train
from openparity.models import ChatRequest, open_model
from tests.cli import openparity

ROOT = Path(__file__).resolve().parents[2]
HELD_OUT = 20


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, object]:
    where = tmp_path_factory.mktemp("format")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples/align/gsm8k_format.py"),
            str(where),
            "--train",
            "600:664",
            "--heldout",
            f"0:{HELD_OUT}",
        ],
        check=True,
    )
    # The training records are screened against the held-out task: none may contain its items.
    settings = AlignSettings(
        method="sft",
        base="smollm2-135m",
        data=where / "train.jsonl",
        output=where / "run",
        steps=8,
        batch_size=4,
        learning_rate=5e-4,
        max_length=320,
        decontaminate=(str(where / "gsm8k-format.yaml"),),
        save_steps=100,
    )
    return where, train(settings, gguf="f32")  # exact: greedy tokens must match


@pytest.mark.timeout(900)
@pytest.mark.slow
def test_sft_raises_held_out_format_compliance_and_the_report_says_so(trained):
    """The loop closed as a user closes it: `openparity gap` of the exported checkpoint with
    --base, on the held-out format task and MMLU as the regression guard."""
    where, result = trained
    assert result.examples == "64 examples from " + str(where / "train.jsonl")
    shown = openparity(
        "gap",
        "--open",
        f"local:{result.gguf}",
        "--base",
        "local:smollm2-135m",
        "--tasks",
        f"{where / 'gsm8k-format.yaml'},mmlu",
        "--limit",
        str(HELD_OUT),
        "--store",
        str(where / "runs.sqlite"),
        "--format",
        "json",
    )
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    moved = {m["task"]: m for m in report["training"]}
    fmt, guard = moved["gsm8k-format"], moved["mmlu"]
    print(
        f"format compliance {fmt['base']['mean'] * HELD_OUT:.0f}/{HELD_OUT} ->"
        f" {fmt['trained']['mean'] * HELD_OUT:.0f}/{HELD_OUT}, p ="
        f" {fmt['p_difference']:.2g}; MMLU guard {guard['change']['mean'] * 100:+.1f} points,"
        f" {guard['verdict']}"
    )
    assert fmt["change"]["n"] == HELD_OUT and fmt["verdict"] == "improved"
    assert fmt["p_difference"] < 0.05
    assert guard["change"]["n"] == HELD_OUT and guard["gap_ratio_before"] is not None
    assert [t["task"] for t in report["tasks"]] == ["mmlu"]  # the format task has no target


@pytest.mark.timeout(600)
@pytest.mark.slow
async def test_the_gguf_export_generates_the_checkpoints_greedy_tokens(trained):
    _, result = trained
    prompts = [
        "What is 12 times 3?",
        "Tom has 5 apples and eats 2. How many are left?",
        "用一句话介绍巴黎。",
    ]
    requests = [ChatRequest.from_prompt(p, max_tokens=24) for p in prompts]
    async with (
        open_model(f"hf:{result.checkpoint}") as hf,
        open_model(f"local:{result.gguf}") as gguf,
    ):
        for request in requests:
            a, b = await hf.generate(request), await gguf.generate(request)
            assert a.text == b.text, (a.text, b.text)
