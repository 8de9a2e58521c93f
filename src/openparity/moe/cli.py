"""CLI of the MoE tools: `openparity moe train | compare | export`."""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import typer

from openparity.moe.settings import ModelOptions, TrainSettings
from openparity.settings_cli import options_from
from openparity.sparse.options import SparseOptions

moe_app = typer.Typer(help="DeepSeekMoE: train a small LM, compare dense vs MoE, export to HF.")


def register(app: typer.Typer) -> None:
    app.add_typer(moe_app, name="moe")


@contextlib.contextmanager
def progress_bars():
    """One bar per preset (steps, ETA, latest losses): report(preset, step, total, last)."""
    from openparity.console import ProgressBars

    with ProgressBars() as bar:
        bars: dict[str, Callable[..., None]] = {}
        val_loss: dict[str, float] = {}

        def report(preset: str, step: int, total: int, last: dict) -> None:
            if preset not in bars:
                bars[preset] = bar(preset)
            val_loss[preset] = last.get("val_loss", val_loss.get(preset, math.nan))
            note = f"train {last['train_loss']:.3f} · val {val_loss[preset]:.3f}"
            bars[preset](step, total, note)

        yield report


@moe_app.command("train")
@options_from(ModelOptions, into="model")
@options_from(TrainSettings)
@options_from(SparseOptions, into="sparse_options")
def train_command(
    preset: str = typer.Option(
        "moe-active", "--preset", help="dense, moe-active, moe-total, mixtral."
    ),
    out: Path = typer.Option(Path("moe-runs/model"), "--out", help="Checkpoint directory."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
    sparsity: float = typer.Option(
        0.0, "--sparsity", min=0.0, max=0.99, help="Dynamic sparse training at this sparsity."
    ),
    sparse_method: str = typer.Option(
        "rigl", "--sparse-method", help="rigl, set, static or prune (with --sparsity)."
    ),
    model: ModelOptions = ...,
    settings: TrainSettings = ...,
    sparse_options: SparseOptions = ...,
) -> None:
    """Train a small byte-level LM (dense or MoE) on CPU; loss log in OUT/log.csv."""
    from openparity.console import out as console
    from openparity.moe.train import train

    config = checked_preset(preset, model)
    if sparsity:
        sparse = sparse_options.config(sparse_method, sparsity, settings.steps, settings.seed)
        settings = replace(settings, sparse=sparse)
    with progress_bars() as report:
        result = train(
            config,
            model.corpus,
            out,
            settings,
            resume=resume,
            progress=functools.partial(report, preset),
        )
    sparse_note = "" if result.sparsity is None else f", {result.sparsity:.1%} of masked weights 0"
    console.print(
        f"{preset}: step {result.step}, train loss {result.train_loss:.4f},"
        f" val loss {result.val_loss:.4f}, {result.tokens_per_s:,.0f} tokens/s{sparse_note};"
        f" checkpoint in {out}"
    )


@moe_app.command("compare")
@options_from(ModelOptions, into="model")
@options_from(TrainSettings)
def compare_command(
    presets: list[str] = typer.Option(
        ["dense", "moe-active", "moe-total"], "--preset", help="Presets to compare (repeat)."
    ),
    out: Path = typer.Option(Path("moe-runs"), "--out", help="One checkpoint directory each."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    model: ModelOptions = ...,
    settings: TrainSettings = ...,
) -> None:
    """Dense vs MoE side by side: params, FLOPs/token, tokens/s, validation loss."""
    from openparity.console import print_json
    from openparity.moe.dense_vs_moe import compare, render

    for name in presets:
        checked_preset(name, model)
    with progress_bars() as report:
        rows = compare(
            presets,
            model.corpus,
            out,
            settings,
            dim=model.dim,
            n_layers=model.layers,
            progress=report,
        )
    if as_json:
        print_json([r.to_dict() for r in rows])
    else:
        render(rows)


@moe_app.command("export")
def export_command(
    model_dir: Path = typer.Argument(..., help="A directory written by `moe train`."),
    out: Path = typer.Option(..., "--out", help="Where to write the HF checkpoint."),
) -> None:
    """Write a Hugging Face checkpoint (Llama, Mixtral or GLM-4-MoE format) of a trained LM."""
    from openparity.console import out as console
    from openparity.moe.export import export_hf, hf_format
    from openparity.moe.train import load_model

    model = load_model(model_dir)
    export_hf(model, out)
    console.print(f"wrote {out} ({hf_format(model)} format): transformers.AutoModelForCausalLM")


def checked_preset(name: str, model: ModelOptions):
    from openparity.errors import OpenparityError
    from openparity.moe.lm import preset as make

    try:
        return make(name, dim=model.dim, n_layers=model.layers)
    except ValueError as exc:
        raise OpenparityError(str(exc)) from None
