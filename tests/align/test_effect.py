"""A real effect on the real model, measured the way every gap is: a short LoRA SFT of the
embedded SmolLM2-135M-Instruct on GSM8K solutions (which end in "#### N") raises its held-out
format compliance, paired exact McNemar p < 0.05; the exported GGUF gives the HF checkpoint's
greedy tokens. About five CPU minutes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from openparity.align import AlignSettings, train
from openparity.bench.compare import load_scores
from openparity.bench.runner import run_task
from openparity.bench.stats import mcnemar_exact
from openparity.bench.store import RunStore
from openparity.bench.tasks import get_task
from openparity.models import ChatRequest, open_model

ROOT = Path(__file__).resolve().parents[2]
HELD_OUT = 20


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, object]:
    where = tmp_path_factory.mktemp("format")
    subprocess.run(
        [sys.executable, str(ROOT / "examples/align/gsm8k_format.py"), str(where),
         "--train", "600:664", "--heldout", f"0:{HELD_OUT}"],
        check=True,
    )  # fmt: skip
    # The training records are screened against the held-out task: none may contain its items.
    settings = AlignSettings(
        method="sft", base="smollm2-135m", data=where / "train.jsonl", output=where / "run",
        steps=8, batch_size=4, learning_rate=5e-4, max_length=320,
        decontaminate=(str(where / "gsm8k-format.yaml"),), save_steps=100,
    )  # fmt: skip
    return where, train(settings, gguf=True)


@pytest.mark.timeout(900)
async def test_sft_raises_held_out_format_compliance(trained):
    where, result = trained
    assert result.examples == "64 examples from " + str(where / "train.jsonl")
    task = get_task(str(where / "gsm8k-format.yaml"))
    store = RunStore(where / "runs.sqlite")
    scores = {}
    for spec in ("local:smollm2-135m", f"local:{result.gguf}"):
        async with open_model(spec) as model:
            summary = await run_task(model, task, store)
        scores[spec] = load_scores(store, summary.run.run_id).scores
    before, after = scores.values()
    ids = sorted(before)
    assert len(ids) == HELD_OUT
    p = mcnemar_exact([before[i] for i in ids], [after[i] for i in ids])
    print(f"format compliance {sum(before.values())}/{HELD_OUT} -> {sum(after.values())}/"
          f"{HELD_OUT}, McNemar p = {p:.2g}")  # fmt: skip
    assert sum(after.values()) > sum(before.values())
    assert p < 0.05


@pytest.mark.timeout(600)
async def test_the_gguf_export_generates_the_checkpoints_greedy_tokens(trained):
    _, result = trained
    prompts = ["What is 12 times 3?", "Tom has 5 apples and eats 2. How many are left?",
               "用一句话介绍巴黎。"]  # fmt: skip
    requests = [ChatRequest.from_prompt(p, max_tokens=24) for p in prompts]
    async with (
        open_model(f"hf:{result.checkpoint}") as hf,
        open_model(f"local:{result.gguf}") as gguf,
    ):
        for request in requests:
            a, b = await hf.generate(request), await gguf.generate(request)
            assert a.text == b.text, (a.text, b.text)
