"""Expert FFNs and how tokens reach them.

Weights use the Hugging Face layout (gate_up_proj (E, 2I, H), down_proj (E, H, I)), so weights
copy across unchanged. Every dropless dispatch sorts the (token, expert) pairs by expert and
computes each expert's rows with one matmul; they differ in how the per-expert matmuls run:
- "grouped": one `torch._grouped_mm` over the sorted rows (the GPU kernel);
- "batched": the sorted rows padded into tiles of neighbouring experts, one `torch.bmm` per
  tile and projection (`tiles.py`: the fast CPU kernel);
- "auto" (default): "grouped" on CUDA, "batched" elsewhere;
- "eager": the reference, one masked gather per expert (as HF's eager experts).
A capacity factor drops, per expert, the pairs beyond capacity = factor * T * k / E (in token
order), as GShard / Switch do.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from openparity.moe.config import MoEConfig
from openparity.moe.tiles import Tiles, run_tiles


class SwiGLU(nn.Module):
    """A dense SwiGLU FFN (shared experts, dense baselines)."""

    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inner, bias=False)
        self.up_proj = nn.Linear(hidden, inner, bias=False)
        self.down_proj = nn.Linear(inner, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward hands on a contiguous gradient (the CPU grouped-mm backward
    rejects expanded ones)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


_GROUPED_OK: dict[tuple[str, torch.dtype], bool] = {}


def _grouped_mm(
    x: torch.Tensor, weights: torch.Tensor, counts: torch.Tensor
) -> torch.Tensor | None:
    """x (N, K) sorted by group, weights (G, K, M), counts (G,) -> (N, M), or None where this
    device / dtype has no grouped kernel."""
    key = (x.device.type, x.dtype)
    if not _GROUPED_OK.get(key, hasattr(torch, "_grouped_mm")):
        return None
    try:
        out = torch._grouped_mm(x, weights, offs=counts.cumsum(0).to(torch.int32))
    except (RuntimeError, NotImplementedError):
        _GROUPED_OK[key] = False
        return None
    _GROUPED_OK[key] = True
    return _ContiguousGrad.apply(out)


def _swiglu(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up, scaled by each row's mixing weight: weighting the narrow activations
    rather than the wide outputs is the same product for less work."""
    gate, up = hidden.chunk(2, dim=-1)
    return F.silu(gate) * up * weights.unsqueeze(-1).to(hidden.dtype)


def _run_grouped(x, tokens, weights, counts, gate_up, down, out) -> torch.Tensor | None:
    hidden = _grouped_mm(x.index_select(0, tokens), gate_up.transpose(1, 2), counts)
    if hidden is None:
        return None
    ys = _grouped_mm(_swiglu(hidden, weights), down.transpose(1, 2), counts)
    return out.index_add_(0, tokens, ys)


def mix_experts(
    x: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor,
    gate_up: torch.Tensor,
    down: torch.Tensor,
    kernel: str = "auto",
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """out[t] += sum_j weights[t, j] * expert_{indices[t, j]}(x[t]) for x (T, H), indices and
    weights (T, k). An index equal to E marks a dropped pair: never computed. Returns out
    (zeros when not given)."""
    n_experts, k = gate_up.shape[0], indices.shape[1]
    out = torch.zeros_like(x) if out is None else out
    flat = indices.reshape(-1)
    experts, order = flat.sort(stable=True)
    counts = torch.bincount(flat, minlength=n_experts + 1)[:n_experts]
    kept = int(counts.sum())
    experts, order = experts[:kept], order[:kept]
    tokens, row_weights = order // k, weights.reshape(-1)[order]
    if kernel == "grouped" or (kernel == "auto" and x.device.type == "cuda"):
        done = _run_grouped(x, tokens, row_weights, counts, gate_up, down, out)
        if done is not None:
            return done
    tiles = Tiles.build(experts, tokens, row_weights, counts, x.shape[-1])
    return run_tiles(x, tiles, gate_up, down, out)


class RoutedExperts(nn.Module):
    def __init__(self, config: MoEConfig) -> None:
        super().__init__()
        self.config = config
        e, h, i = config.n_routed, config.hidden, config.expert_dim
        self.gate_up_proj = nn.Parameter(torch.empty(e, 2 * i, h))
        self.down_proj = nn.Parameter(torch.empty(e, h, i))
        nn.init.normal_(self.gate_up_proj, std=h**-0.5)
        nn.init.normal_(self.down_proj, std=i**-0.5)

    def forward(
        self,
        x: torch.Tensor,
        indices: torch.Tensor,
        weights: torch.Tensor,
        out: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, int]:
        """x (T, H), indices/weights (T, k) -> (out + routed output (T, H), pairs dropped)."""
        keep = self._capacity_mask(indices)
        dropped = int((~keep).sum()) if keep is not None else 0
        if self.config.dispatch == "eager":
            weights = weights if keep is None else weights * keep
            return self._eager(x, indices, weights, out), dropped
        if keep is not None:
            indices = indices.masked_fill(~keep, self.config.n_routed)  # nobody computes it
        mixed = mix_experts(
            x, indices, weights, self.gate_up_proj, self.down_proj, self.config.dispatch, out
        )
        return mixed, dropped

    def capacity(self, tokens: int) -> int | None:
        c = self.config
        if c.capacity_factor is None:
            return None
        return max(1, math.ceil(c.capacity_factor * tokens * c.top_k / c.n_routed))

    def _capacity_mask(self, indices: torch.Tensor) -> torch.Tensor | None:
        """True for the (token, slot) pairs within their expert's capacity, in token order;
        None when dropless."""
        limit = self.capacity(indices.shape[0])
        if limit is None:
            return None
        flat = indices.reshape(-1)
        one_hot = F.one_hot(flat, self.config.n_routed)
        rank = (one_hot.cumsum(0) * one_hot).sum(-1) - 1  # position within its expert
        return (rank < limit).view_as(indices)

    def _eager(self, x, indices, weights, out) -> torch.Tensor:
        out = torch.zeros_like(x) if out is None else out
        for expert in range(self.config.n_routed):
            token, slot = torch.where(indices == expert)
            if token.numel() == 0:
                continue
            gate, up = F.linear(x[token], self.gate_up_proj[expert]).chunk(2, dim=-1)
            y = F.linear(F.silu(gate) * up, self.down_proj[expert])
            out = out.index_add(0, token, y * weights[token, slot, None].to(y.dtype))
        return out
