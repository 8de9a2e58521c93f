"""MoE layer speed: forward and forward+backward time of openparity's DeepSeekMoE layer against
  dense       a SwiGLU FFN with the same *active* parameters (the physical floor: ~1.0x);
  openparity  our layer, default dispatch ("batched" tiles on CPU, `_grouped_mm` on CUDA);
  op-grouped_mm  our layer forced onto `torch._grouped_mm`;
  seed        the seed's layer: every expert computed for every token, softmax-mixed;
  hf-grouped  Hugging Face's DeepseekV3MoE with experts_implementation="grouped_mm";
  hf-eager    the same with the eager per-expert loop;
at 512 / 2048 / 8192 tokens, same weights, one run. Prints milliseconds and each one's ratio
to dense. fp32 on CPU by default; `--device cuda --dtype bfloat16` on a GPU.

    python benchmarks/moe_layer.py [--tokens 512 2048 8192] [--repeats 9]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from openparity.moe.config import MoEConfig
from openparity.moe.experts import SwiGLU
from openparity.moe.layer import MoELayer

HIDDEN, EXPERT_DIM, ROUTED, SHARED, TOP_K = 512, 128, 64, 2, 6


class SeedMixture(nn.Module):
    """The seed's "MoE": all experts on all tokens, mixed by softmax weights (dense cost)."""

    def __init__(self, layer: MoELayer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        experts = self.layer.experts
        weights = F.linear(x, self.layer.router.weight).softmax(-1)  # (T, E)
        gate, up = torch.einsum("th,eih->tei", x, experts.gate_up_proj).chunk(2, dim=-1)
        y = torch.einsum("tei,ehi->teh", F.silu(gate) * up, experts.down_proj)
        return (y * weights.unsqueeze(-1)).sum(1) + self.layer.shared(x)


def hf_layer(ours: MoELayer, implementation: str) -> nn.Module:
    from transformers.models.deepseek_v3.configuration_deepseek_v3 import DeepseekV3Config
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE

    config = DeepseekV3Config(
        hidden_size=HIDDEN,
        moe_intermediate_size=EXPERT_DIM,
        n_routed_experts=ROUTED,
        num_experts_per_tok=TOP_K,
        n_shared_experts=SHARED,
        n_group=1,
        topk_group=1,
        routed_scaling_factor=1.0,
        norm_topk_prob=True,
    )
    config._experts_implementation = implementation
    layer = DeepseekV3MoE(config)
    with torch.no_grad():
        layer.gate.weight.copy_(ours.router.weight)
        layer.experts.gate_up_proj.copy_(ours.experts.gate_up_proj)
        layer.experts.down_proj.copy_(ours.experts.down_proj)
        for name in ("gate_proj", "up_proj", "down_proj"):
            getattr(layer.shared_experts, name).weight.copy_(getattr(ours.shared, name).weight)
    return layer


def run_once(module: nn.Module, x: torch.Tensor, backward: bool) -> float:
    inputs = x.detach().requires_grad_(backward)
    started = time.perf_counter()
    if backward:
        module(inputs).backward(torch.ones_like(inputs))
    else:
        with torch.no_grad():  # inference: no activations kept for a backward
            module(inputs)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def timed(layers: dict[str, nn.Module], x: torch.Tensor, backward: bool, repeats: int):
    """Seconds per repeat for each layer; the layers take turns within each repeat, so a slow
    spell of a noisy machine hits them all alike and per-repeat ratios are paired."""
    for layer in layers.values():
        run_once(layer, x, backward)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in layers}
    for _ in range(repeats):
        for name, layer in layers.items():
            times[name].append(run_once(layer, x, backward))
    return times


def cell(times: list[float], dense: list[float]) -> str:
    """Median ms, and the median with the interquartile range of the per-repeat ratio to dense."""
    ratios = [t / d for t, d in zip(times, dense, strict=True)]
    q1, median, q3 = statistics.quantiles(ratios, n=4)
    return f"{statistics.median(times) * 1000:8.1f} {median:5.2f}x [{q1:.2f}-{q3:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[512, 2048, 8192])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--no-hf", action="store_true", help="Skip the transformers layers.")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    ours = MoELayer(MoEConfig(HIDDEN, EXPERT_DIM, ROUTED, TOP_K, n_shared=SHARED))
    ours_grouped = MoELayer(MoEConfig(**{**ours.config.to_dict(), "dispatch": "grouped"}))
    ours_grouped.load_state_dict(ours.state_dict())
    layers: dict[str, nn.Module] = {
        "dense": SwiGLU(HIDDEN, EXPERT_DIM * (TOP_K + SHARED)),
        "openparity": ours,
        "op-grouped_mm": ours_grouped,
        "seed": SeedMixture(ours),
    }
    if not args.no_hf:
        layers["hf-grouped"] = hf_layer(ours, "grouped_mm")
        layers["hf-eager"] = hf_layer(ours, "eager")
    for layer in layers.values():
        layer.to(args.device, dtype)
    print(
        f"hidden {HIDDEN}, {ROUTED} routed experts of {EXPERT_DIM} (top-{TOP_K}) + {SHARED} shared;"
        f" dense = SwiGLU({HIDDEN}, {EXPERT_DIM * (TOP_K + SHARED)}); {args.device} {args.dtype},"
        f" {torch.get_num_threads()} threads; {args.repeats} repeats, layers interleaved;"
        " median ms, median ratio to dense [interquartile range of the per-repeat ratio]"
    )
    for backward in (False, True):
        print("\nforward + backward" if backward else "\nforward")
        print("tokens  " + "".join(f"{name:>29}" for name in layers))
        for tokens in args.tokens:
            x = torch.randn(tokens, HIDDEN, device=args.device, dtype=dtype)
            times = timed(layers, x, backward, args.repeats)
            cells = "".join(f"{cell(t, times['dense']):>29}" for t in times.values())
            print(f"{tokens:<8}{cells}", flush=True)


if __name__ == "__main__":
    main()
