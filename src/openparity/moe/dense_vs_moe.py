"""Dense vs MoE on equal terms: the seed's claims ("capacity x3 at -40 % inference cost") as
measured numbers: parameters total / active, FLOPs per token, training and inference tokens/s,
validation loss, all from the same corpus, steps and seed."""

from __future__ import annotations

import functools
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from openparity.moe.lm import CausalLM, model_size, perplexity_bits, preset
from openparity.moe.train import TrainSettings, load_model, train


@dataclass(frozen=True)
class Row:
    preset: str
    total_params: int
    active_params: int
    flops_per_token: int
    train_tokens_per_s: float
    infer_tokens_per_s: float
    val_loss: float
    val_bits_per_byte: float
    max_violation: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def inference_speeds(
    models: list[CausalLM], batch: int = 16, seq_len: int = 128, rounds: int = 7
) -> list[float]:
    """Forward tokens/s of each model on the same random bytes, median of `rounds`; the models
    take turns within a round, so a slow spell of a noisy machine hits them all alike."""
    ids = torch.randint(0, min(m.config.vocab for m in models), (batch, seq_len))
    times: list[list[float]] = [[] for _ in models]
    with torch.no_grad():
        for model in models:
            model.eval()
            model(ids)  # warm-up
        for _ in range(rounds):
            for model, spent in zip(models, times, strict=True):
                started = time.perf_counter()
                model(ids)
                spent.append(time.perf_counter() - started)
    return [batch * seq_len / statistics.median(spent) for spent in times]


def compare(
    presets: list[str],
    corpus: str,
    out: Path,
    settings: TrainSettings,
    *,
    dim: int = 128,
    n_layers: int = 4,
    progress=None,
) -> list[Row]:
    results = []
    for name in presets:
        config = preset(name, dim=dim, n_layers=n_layers)
        report = None if progress is None else functools.partial(progress, name)
        result = train(config, corpus, out / name, settings, resume=True, progress=report)
        results.append((name, result, load_model(out / name)))
    speeds = inference_speeds([model for _, _, model in results], seq_len=settings.seq_len)
    rows = []
    for (name, result, model), speed in zip(results, speeds, strict=True):
        size = model_size(model, settings.seq_len)
        rows.append(
            Row(
                preset=name,
                total_params=size.total_params,
                active_params=size.active_params,
                flops_per_token=size.flops_per_token,
                train_tokens_per_s=result.tokens_per_s,
                infer_tokens_per_s=speed,
                val_loss=result.val_loss,
                val_bits_per_byte=perplexity_bits(result.val_loss),
                max_violation=result.max_violation,
            )
        )
    return rows


def render(rows: list[Row]) -> None:
    from openparity.console import Column, out, print_table

    base = rows[0]
    headers = (
        "preset",
        "params total",
        "active",
        "FLOPs/token",
        "train tok/s",
        "infer tok/s",
        "val loss",
        "bits/byte",
        "MaxVio",
    )
    optional = {"params total", "FLOPs/token", "bits/byte", "MaxVio"}
    columns = [
        Column(h, numeric=h != "preset", identifier=h == "preset", optional=h in optional)
        for h in headers
    ]
    table = [
        [
            r.preset,
            f"{r.total_params / 1e6:.2f}M ({r.total_params / base.total_params:.2f}x)",
            f"{r.active_params / 1e6:.2f}M ({r.active_params / base.active_params:.2f}x)",
            f"{r.flops_per_token / 1e6:.2f}M ({r.flops_per_token / base.flops_per_token:.2f}x)",
            f"{r.train_tokens_per_s:,.0f} ({r.train_tokens_per_s / base.train_tokens_per_s:.2f}x)",
            f"{r.infer_tokens_per_s:,.0f} ({r.infer_tokens_per_s / base.infer_tokens_per_s:.2f}x)",
            f"{r.val_loss:.4f}",
            f"{r.val_bits_per_byte:.3f}",
            "-" if r.max_violation is None else f"{r.max_violation:.2f}",
        ]
        for r in rows
    ]
    print_table(columns, table)
    out.print("ratios are against the first preset; same corpus, steps, batch and seed for all")
