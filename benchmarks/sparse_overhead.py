"""Mask machinery overhead: time per training step (forward, backward, AdamW, mask work) of the
small LM with DynamicSparsity masks against the same dense model, in one run, the models taking
turns within each round so a noisy spell hits them alike. Target: <= 1.10x at 90 % sparsity.

  dense      the plain CausalLM
  static     masks fixed (parametrization + re-zeroing after each optimiser step)
  rigl       RigL with delta_t = 10 (harsher than the paper's 100): its mask updates and
             dense-gradient steps fall among the timed steps as in training; means compared

The masked models run dense matmuls on masked weights (PyTorch has no fast CPU kernel for
unstructured sparsity): this is the cost of the bookkeeping, not a sparse speed-up.

    python benchmarks/sparse_overhead.py [--preset dense] [--dim 256] [--rounds 40] [--delta-t 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from openparity.moe.lm import CausalLM, preset
from openparity.sparse import DynamicSparsity, SparseConfig


def build(kind: str, args, total_steps: int):
    torch.manual_seed(0)
    model = CausalLM(preset(args.preset, dim=args.dim, n_layers=args.layers))
    sparsity = None
    if kind != "dense":
        config = SparseConfig(method=kind, sparsity=args.sparsity, delta_t=args.delta_t, end=1.0)
        sparsity = DynamicSparsity(model, config, total_steps=total_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    if sparsity is not None:
        sparsity.attach(optimizer)
    return model, optimizer


def step(model, optimizer, ids) -> None:
    ce, aux = model.loss(ids)
    optimizer.zero_grad(set_to_none=True)
    (ce + aux).backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="dense")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--delta-t", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    torch.manual_seed(1)
    ids = torch.randint(0, 256, (args.batch, args.seq_len + 1))
    kinds = ["dense", "static", "rigl"]
    # the schedule runs far past the timed steps, so the update fraction stays near alpha
    models = {k: build(k, args, total_steps=100 * args.rounds) for k in kinds}
    for model, optimizer in models.values():
        step(model, optimizer, ids)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            model, optimizer = models[kind]
            started = time.perf_counter()
            step(model, optimizer, ids)
            times[kind].append(time.perf_counter() - started)
    dense = statistics.mean(times["dense"])
    print(
        f"{args.preset} LM dim {args.dim} x {args.layers} layers, batch {args.batch} x"
        f" {args.seq_len}, sparsity {args.sparsity}, {args.rounds} interleaved rounds,"
        f" {torch.get_num_threads()} threads"
    )
    print(f"{'model':<8} {'mean ms/step':>13} {'x dense':>8} {'median x dense':>15}")
    for kind in kinds:
        mean, median = statistics.mean(times[kind]), statistics.median(times[kind])
        print(
            f"{kind:<8} {mean * 1e3:13.1f} {mean / dense:8.3f}"
            f" {median / statistics.median(times['dense']):15.3f}"
        )
    updates = sum(1 for s in range(2, args.rounds + 2) if s % args.delta_t == 0)
    print(
        f"rigl: {updates} of the {args.rounds} timed steps were mask updates (dense gradient"
        f" kept, drop/grow, optimiser state reset); the mean includes them"
    )


if __name__ == "__main__":
    main()
