"""The sparse-training table over several seeds: dense against static / SET / RigL / gradual
magnitude pruning at each sparsity on the small byte-level LM, as `openparity sparse compare`
trains them, repeated per seed. Prints per run the mean validation loss, its paired
difference to dense (mean and SD over seeds), training FLOPs as a share of dense, non-zero
parameters and mean CPU wall time. Finished runs in OUT are reused, so a second call only prints.

    python benchmarks/sparse_table.py [--seeds 0 1 2] [--steps 200] [--out sparse-seeds]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from openparity.moe.sparse_compare import compare, runs
from openparity.moe.train import TrainSettings
from openparity.sparse import METHODS
from openparity.sparse.options import SparseOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sparsity", type=float, nargs="+", default=[0.8, 0.9])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--preset", default="dense")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("sparse-seeds"))
    args = parser.parse_args()
    by_run: dict[str, list] = {}
    for seed in args.seeds:
        settings = TrainSettings(steps=args.steps, seed=seed)
        base = SparseOptions().config("rigl", 0.9, args.steps, seed)
        rows = compare(
            runs(args.methods, args.sparsity, base),
            "bench:gsm8k",
            args.out / f"seed{seed}",
            settings,
            model_preset=args.preset,
        )
        dense = rows[0]
        for row in rows:
            by_run.setdefault(row.name, []).append((row, row.val_loss - dense.val_loss, dense))
        print(f"seed {seed}: " + ", ".join(f"{r.name} {r.val_loss:.4f}" for r in rows))
    n = len(args.seeds)
    print(
        f"\n{args.preset} LM, {args.steps} steps x 16 x 128 bytes of GSM8K text, {n} seeds;"
        " delta = val loss minus dense's on the same seed (mean +/- SD over seeds)"
    )
    header = f"{'run':<10} {'val loss':>9} {'delta':>16} {'FLOPs':>7} {'non-zero':>9} {'wall s':>7}"
    print(header)
    for name, entries in by_run.items():
        losses = [r.val_loss for r, _, _ in entries]
        deltas = [d for _, d, _ in entries]
        row, _, dense = entries[0]
        sd = statistics.stdev(deltas) if n > 1 else float("nan")
        print(
            f"{name:<10} {statistics.mean(losses):9.4f} {statistics.mean(deltas):+8.4f}"
            f" +/- {sd:.4f} {row.training_flops / dense.training_flops:6.2f}x"
            f" {row.nonzero_params / row.total_params:8.0%}"
            f" {statistics.mean(r.wall_s for r, _, _ in entries):7.1f}"
        )


if __name__ == "__main__":
    main()
