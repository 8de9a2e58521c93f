"""What a training run depends on: `AlignSettings` (the run directory's settings.json keeps
it for `--resume`), the progress callback's shape and the DeepSpeed configurations."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from openparity.align.errors import AlignError
from openparity.settings_cli import REQUIRED, comma_list, comma_text, setting

Method = Literal["sft", "dpo", "grpo"]


@dataclass
class AlignSettings:
    """Everything a run depends on; `settings.json` keeps it for `--resume`. The CLI's options
    are built from these fields."""

    method: Method
    output: Path = setting(REQUIRED, ("--output", "-o"), "Run directory (checkpoints, final/).")
    base: str = setting(
        "smollm2-135m",
        "--base",
        "Base model: embedded alias, GGUF file, checkpoint dir, hub id.",
    )
    data: Path | None = setting(None, "--data", "JSONL training records.")  # sft / dpo
    task: str | None = setting(None, "--task", "Task whose prompts and scorer give rewards.")
    items: str = setting(":", "--items", "Which items, START:END (e.g. 200:600).")
    variant: str | None = None  # grpo: the task's prompt variant
    steps: int = setting(50, "--steps", "Optimizer steps.", min=1)
    batch_size: int = setting(4, "--batch-size", "Global batch (examples / completions).", min=1)
    grad_accum: int = setting(1, "--grad-accum", "Gradient accumulation steps.", min=1)
    learning_rate: float = setting(2e-4, "--lr", "Learning rate (constant).")
    lora_r: int = setting(16, "--lora-r", "LoRA rank; 0: full fine-tuning.", min=0)
    lora_alpha: int = 32
    max_length: int = setting(512, "--max-length", "Tokens per example (truncated).", min=16)
    seed: int = setting(0, "--seed", "Seed for weights, data order and sampling.")
    beta: float = setting(0.1, "--beta", "DPO temperature / GRPO KL weight.")
    generations: int = setting(4, "--generations", "Completions per prompt.", min=2)
    max_completion: int = setting(128, "--max-completion", "Tokens each.", min=1)
    temperature: float = setting(1.0, "--temperature", "Sampling temperature.")
    vllm_server: str | None = setting(
        None, "--vllm-server", "Generate on a TRL vLLM server (http://HOST:PORT)."
    )
    canaries: float = setting(
        0.05,
        "--canaries",
        "Share of prompts (code tasks) whose tests contradict them: a pass is a hack.",
        min=0.0,
        max=1.0,
    )
    hack_stop: float = setting(
        0.2,
        "--hack-stop",
        "Stop when more than this share of the canaries scored pass.",
        min=0.0,
        max=1.0,
    )
    decontaminate: tuple[str, ...] = setting(
        ("gsm8k", "humaneval", "mbpp"),
        "--decontaminate",
        "Tasks (names or YAML files) whose items no training record may contain; '' for none.",
        shown=str,
        parse=comma_list,
        show=comma_text,
    )
    save_steps: int = setting(25, "--save-steps", "Checkpoint every N steps.", min=1)
    gradient_checkpointing: bool = setting(
        True,
        "--activation-checkpointing/--no-activation-checkpointing",
        "Recompute activations in backward (TRL's default too): less memory for more"
        " compute; on CPUs measured no slower (benchmarks/align_step.py).",
    )
    curriculum: str | None = setting(
        None,
        "--curriculum",
        "Run id of the base model on these items: train easiest first (else random order).",
    )
    store: Path = setting(Path(".openparity/runs.sqlite"), "--store", "Run store (--curriculum).")
    processes: int = setting(1, "--processes", "Data-parallel processes (accelerate).", min=1)
    deepspeed: str | None = setting(
        None,
        "--deepspeed",
        "DeepSpeed ZeRO: zero2, zero3 or a DeepSpeed JSON file (GPUs; CPU works, slowly).",
    )
    precision: str = setting(
        "auto",
        "--precision",
        "bf16, fp32, or auto: bf16 where the hardware has it (GPUs, CPUs with AMX or"
        " AVX512-BF16), fp32 elsewhere.",
    )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["output"] = str(self.output)
        data["data"] = None if self.data is None else str(self.data)
        data["store"] = str(self.store)
        data["decontaminate"] = list(self.decontaminate)
        return data

    def fingerprint(self) -> dict[str, Any]:
        """What a resume must agree on (not where files are, not the process count)."""
        return {k: v for k, v in self.to_json().items() if k not in ("output", "processes")}


Progress = Callable[[int, int, dict[str, float]], None]
PRECISIONS = ("auto", "bf16", "fp32")

DEEPSPEED_PRESETS = ("zero2", "zero3")


def deepspeed_config(choice: str) -> Path:
    """The DeepSpeed JSON for `--deepspeed`: a shipped preset (zero2: optimizer states and
    gradients sharded; zero3: parameters too) or the user's own file. "auto" values in it are
    filled from the training settings by the Trainer."""
    if choice in DEEPSPEED_PRESETS:
        return Path(__file__).parent / "deepspeed" / f"{choice}.json"
    path = Path(choice).expanduser()
    if not path.is_file():
        raise AlignError(
            f"--deepspeed {choice}: no such preset or file",
            hint=f"use {' or '.join(DEEPSPEED_PRESETS)}, or a DeepSpeed JSON config file",
        )
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AlignError(f"--deepspeed {path}: not a JSON file ({exc})") from None
    return path.resolve()
