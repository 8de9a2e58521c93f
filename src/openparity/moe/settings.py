"""What a small-LM run depends on, declared once: the CLI of `moe train`, `moe compare` and
`sparse compare` is built from these fields (no torch import, so `--help` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from openparity.settings_cli import setting

if TYPE_CHECKING:
    from openparity.sparse import SparseConfig


@dataclass(frozen=True)
class TrainSettings:
    """How the LM is trained. Losses are evaluated (and a checkpoint written) every
    `eval_every` / `save_every` steps and always at the last step."""

    steps: int = setting(200, "--steps", "Optimiser steps.", min=1)
    batch: int = setting(16, "--batch", "Sequences per step.", min=1)
    seq_len: int = setting(128, "--seq-len", "Bytes per sequence.", min=8)
    lr: float = setting(3e-3, "--lr", "Peak learning rate.")
    warmup: int = 20
    eval_every: int = 50
    eval_batches: int = 8
    save_every: int = 50
    seed: int = setting(0, "--seed", "Seed for weights and batches.")
    sparse: SparseConfig | None = None  # dynamic sparse training (RigL, SET, static, prune)

    def trajectory(self) -> dict[str, Any]:
        """What a resumed run must agree on: everything that shapes the weights (not the
        number of steps, which a resume may extend, nor how often it evaluates and saves)."""
        return {
            "batch": self.batch,
            "seq_len": self.seq_len,
            "lr": self.lr,
            "warmup": self.warmup,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class ModelOptions:
    """Which text the LM reads and the shape its preset is built at."""

    corpus: str = setting(
        "bench:gsm8k", "--corpus", "UTF-8 text file, or bench:gsm8k / bench:mmlu."
    )
    dim: int = setting(128, "--dim", "Model width.", min=16)
    layers: int = setting(4, "--layers", "Transformer blocks.", min=1)
