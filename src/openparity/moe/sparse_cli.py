"""CLI of `openparity sparse compare`: dense against sparse training of the small LM. It lives
with the LM it trains; `sparse/` is the library of masks and schedules that `moe train` uses
(`--sparsity 0.9 --sparse-method rigl`), so the dependency runs one way, moe -> sparse."""

from __future__ import annotations

from pathlib import Path

import typer

from openparity.moe.cli import progress_bars
from openparity.moe.settings import ModelOptions, TrainSettings
from openparity.settings_cli import options_from
from openparity.sparse.options import SparseOptions

sparse_app = typer.Typer(help="Dynamic sparse training (RigL, SET, static, pruning) vs dense.")


def register(app: typer.Typer) -> None:
    app.add_typer(sparse_app, name="sparse")


@sparse_app.command("compare")
@options_from(ModelOptions, into="model")
@options_from(TrainSettings)
@options_from(SparseOptions, into="sparse_options")
def compare_command(
    methods: list[str] = typer.Option(
        ["static", "set", "rigl", "prune"], "--method", help="Methods to compare (repeat)."
    ),
    sparsities: list[float] = typer.Option([0.8, 0.9], "--sparsity", help="Targets (repeat)."),
    preset: str = typer.Option("dense", "--preset", help="The LM: dense, moe-active..."),
    out: Path = typer.Option(Path("sparse-runs"), "--out", help="One checkpoint directory each."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    model: ModelOptions = ...,
    settings: TrainSettings = ...,
    sparse_options: SparseOptions = ...,
) -> None:
    """Dense vs static / SET / RigL / pruning at each sparsity: loss, FLOPs, params, time."""
    from openparity.console import print_json
    from openparity.moe.cli import checked_preset
    from openparity.moe.sparse_compare import compare, render, runs

    for sparsity in sparsities:
        if not 0 < sparsity < 1:
            raise typer.BadParameter(f"{sparsity} is not in (0, 1)", param_hint="--sparsity")
    checked_preset(preset, model)
    base = sparse_options.config("rigl", 0.9, settings.steps, settings.seed)
    planned = runs(methods, sparsities, base)
    with progress_bars() as report:
        rows = compare(
            planned,
            model.corpus,
            out,
            settings,
            model_preset=preset,
            dim=model.dim,
            n_layers=model.layers,
            progress=report,
        )
    if as_json:
        print_json([r.to_dict() for r in rows])
    else:
        render(rows)
