"""The sparse-training options shared by `openparity sparse compare` and `openparity moe train`."""

from __future__ import annotations

import typer

DISTRIBUTION = typer.Option("erk", "--distribution", help="Layer densities: uniform, er, erk.")
DELTA_T = typer.Option(
    None, "--delta-t", min=1, help="Steps between mask updates [default: steps / 8]."
)
ALPHA = typer.Option(0.3, "--alpha", min=0.01, max=1.0, help="Initial drop/grow fraction.")


def sparse_config(
    method: str,
    sparsity: float,
    distribution: str,
    delta_t: int | None,
    alpha: float,
    steps: int,
    seed: int,
):
    """The SparseConfig the options describe. delta_t defaults to steps / 8: grown weights
    need time to train before the next update judges them by magnitude (at 200 steps, RigL
    at 90 % reached val loss 1.94 with delta_t 25 against 2.05 with 8)."""
    from openparity.sparse import SparseConfig

    return SparseConfig(
        method=method,
        sparsity=sparsity,
        distribution=distribution,
        delta_t=delta_t or max(1, steps // 8),
        alpha=alpha,
        seed=seed,
    )
