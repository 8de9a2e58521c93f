"""Dense against sparse training on the small LM, on equal terms: the same corpus, steps, batch
and seed for every row; validation loss at equal steps, sparse-aware training FLOPs, non-zero
parameters and CPU wall time (masked dense matmuls: sparsity saves no time here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from openparity.moe.lm import perplexity_bits, preset
from openparity.moe.train import TrainSettings, load_model, train
from openparity.sparse.sparsifier import SparseConfig


@dataclass(frozen=True)
class Row:
    name: str  # "dense", "rigl@0.9"...
    method: str
    sparsity: float  # target over the masked layers
    nonzero_params: int
    total_params: int
    training_flops: float
    val_loss: float
    val_bits_per_byte: float
    wall_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def runs(
    methods: list[str], sparsities: list[float], base: SparseConfig
) -> list[tuple[str, SparseConfig | None]]:
    """(name, config) of the dense baseline and every method at every sparsity."""
    planned: list[tuple[str, SparseConfig | None]] = [("dense", None)]
    for sparsity in sparsities:
        for method in methods:
            planned.append(
                (f"{method}@{sparsity:g}", replace(base, method=method, sparsity=sparsity))
            )
    return planned


def compare(
    planned: list[tuple[str, SparseConfig | None]],
    corpus: str,
    out: Path,
    settings: TrainSettings,
    *,
    model_preset: str = "dense",
    dim: int = 128,
    n_layers: int = 4,
    progress=None,
) -> list[Row]:
    config = preset(model_preset, dim=dim, n_layers=n_layers)
    rows = []
    for name, sparse in planned:
        report = None if progress is None else (lambda *a, _n=name: progress(_n, *a))
        result = train(
            config,
            corpus,
            out / name.replace("@", "-"),
            replace(settings, sparse=sparse),
            resume=True,
            progress=report,
        )
        model = load_model(result.directory)
        total = sum(p.numel() for p in model.parameters())
        nonzero = sum(int((p != 0).sum()) for p in model.parameters())
        rows.append(
            Row(
                name,
                sparse.method if sparse else "dense",
                sparse.sparsity if sparse else 0.0,
                nonzero,
                total,
                result.training_flops,
                result.val_loss,
                perplexity_bits(result.val_loss),
                result.train_seconds,
            )
        )
    return rows


def render(rows: list[Row]) -> None:
    from openparity.console import Column, out, print_table

    base = rows[0]
    headers = ("run", "non-zero params", "training FLOPs", "val loss", "bits/byte", "wall s")
    optional = {"bits/byte", "wall s"}
    columns = [
        Column(h, numeric=h != "run", identifier=h == "run", optional=h in optional)
        for h in headers
    ]
    table = [
        [
            r.name,
            f"{r.nonzero_params / 1e6:.3f}M ({r.nonzero_params / r.total_params:.0%})",
            f"{r.training_flops:.3g} ({r.training_flops / base.training_flops:.2f}x)",
            f"{r.val_loss:.4f} ({r.val_loss - base.val_loss:+.4f})",
            f"{r.val_bits_per_byte:.3f}",
            f"{r.wall_s:.1f}",
        ]
        for r in rows
    ]
    print_table(columns, table)
    out.print(
        "same corpus, steps, batch and seed for every run; FLOPs count what a kernel skipping"
        " zeros would do (RigL's dense-gradient steps included); wall time is masked dense"
        " matmuls on this CPU (no sparse kernel: sparsity saves no time here)"
    )
