"""CLI of `openparity sparse compare`: dense against sparse training of the small LM. It lives
with the LM it trains; `sparse/` is the library of masks and schedules that `moe train` uses
(`--sparsity 0.9 --sparse-method rigl`), so the dependency runs one way, moe -> sparse."""

from __future__ import annotations

from pathlib import Path

import typer

from openparity.moe.cli import BATCH, CORPUS, DIM, LAYERS, LR, SEED, SEQ_LEN, STEPS, progress_bars
from openparity.sparse.options import ALPHA, DELTA_T, DISTRIBUTION, sparse_config

sparse_app = typer.Typer(help="Dynamic sparse training (RigL, SET, static, pruning) vs dense.")


def register(app: typer.Typer) -> None:
    app.add_typer(sparse_app, name="sparse")


@sparse_app.command("compare")
def compare_command(
    methods: list[str] = typer.Option(
        ["static", "set", "rigl", "prune"], "--method", help="Methods to compare (repeat)."
    ),
    sparsities: list[float] = typer.Option([0.8, 0.9], "--sparsity", help="Targets (repeat)."),
    preset: str = typer.Option("dense", "--preset", help="The LM: dense, moe-active..."),
    distribution: str = DISTRIBUTION,
    delta_t: int | None = DELTA_T,
    alpha: float = ALPHA,
    corpus: str = CORPUS,
    out: Path = typer.Option(Path("sparse-runs"), "--out", help="One checkpoint directory each."),
    steps: int = STEPS,
    batch: int = BATCH,
    seq_len: int = SEQ_LEN,
    dim: int = DIM,
    layers: int = LAYERS,
    lr: float = LR,
    seed: int = SEED,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Dense vs static / SET / RigL / pruning at each sparsity: loss, FLOPs, params, time."""
    from openparity.console import print_json
    from openparity.moe.cli import checked_preset, train_settings
    from openparity.moe.sparse_compare import compare, render, runs

    for sparsity in sparsities:
        if not 0 < sparsity < 1:
            raise typer.BadParameter(f"{sparsity} is not in (0, 1)", param_hint="--sparsity")
    checked_preset(preset, dim, layers)
    base = sparse_config("rigl", 0.9, distribution, delta_t, alpha, steps, seed)
    planned = runs(methods, sparsities, base)
    with progress_bars() as report:
        rows = compare(
            planned,
            corpus,
            out,
            train_settings(steps, batch, seq_len, lr, seed),
            model_preset=preset,
            dim=dim,
            n_layers=layers,
            progress=report,
        )
    if as_json:
        print_json([r.to_dict() for r in rows])
    else:
        render(rows)
