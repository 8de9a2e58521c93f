"""What a training run depends on: `AlignSettings` (the run directory's settings.json keeps
it for `--resume`), the progress callback's shape and the DeepSpeed configurations."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from openparity.align.errors import AlignError

Method = Literal["sft", "dpo", "grpo"]


@dataclass
class AlignSettings:
    """Everything a run depends on; `settings.json` keeps it for `--resume`."""

    method: Method
    base: str  # embedded alias, GGUF file, checkpoint directory or hub id
    output: Path
    data: Path | None = None  # sft / dpo: a JSONL file
    task: str | None = None  # grpo: the task whose prompts and scorer are used
    items: str = ":"  # grpo: which of the task's items, as START:END
    variant: str | None = None  # grpo: the task's prompt variant
    steps: int = 50
    batch_size: int = 4
    grad_accum: int = 1
    learning_rate: float = 2e-4
    lora_r: int = 16  # 0: full fine-tuning
    lora_alpha: int = 32
    max_length: int = 512
    seed: int = 0
    beta: float = 0.1  # dpo: preference temperature; grpo: KL weight
    generations: int = 4  # grpo: completions per prompt
    max_completion: int = 128  # grpo: tokens per completion
    temperature: float = 1.0  # grpo: sampling temperature
    vllm_server: str | None = None  # grpo: generate on a TRL vLLM server at this URL
    canaries: float = 0.05  # grpo, code tasks: share of prompts whose tests contradict them
    hack_stop: float = 0.2  # grpo: stop when more than this share of canaries pass
    decontaminate: tuple[str, ...] = ("gsm8k", "humaneval", "mbpp")
    save_steps: int = 25
    gradient_checkpointing: bool = True  # recompute activations in backward: less memory
    curriculum: str | None = None  # run id of the base model's results: easiest items first
    store: Path = Path(".openparity/runs.sqlite")  # the run store the curriculum run is in
    processes: int = 1
    deepspeed: str | None = None  # zero2, zero3 or a DeepSpeed JSON file (see deepspeed_config)
    precision: str = "auto"  # bf16, fp32, or auto: bf16 where the hardware computes it natively

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
