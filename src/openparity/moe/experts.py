"""Expert FFNs and how tokens reach them.

Weights use the Hugging Face layout (gate_up_proj (E, 2I, H), down_proj (E, H, I)), so weights
copy across unchanged. Dispatch:
- "grouped" (default, dropless): sort the (token, expert) pairs by expert, run every expert's
  slice in one grouped matmul (`torch._grouped_mm`, or a loop over the contiguous slices where
  the grouped kernel is unavailable), scatter-add back weighted;
- "eager": the reference, one masked gather per expert (as HF's eager experts);
- a capacity factor drops, per expert, the pairs beyond capacity = factor * T * k / E (in token
  order), as GShard / Switch do.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from openparity.moe.config import MoEConfig


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


def grouped_mm(x: torch.Tensor, weights: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """x (N, K) sorted by group, weights (G, K, M), counts (G,) -> (N, M): row block g @ w[g]."""
    key = (x.device.type, x.dtype)
    if _GROUPED_OK.get(key, hasattr(torch, "_grouped_mm")):
        try:
            offsets = counts.cumsum(0).to(torch.int32)
            out = torch._grouped_mm(x, weights, offs=offsets)
            _GROUPED_OK[key] = True
            return _ContiguousGrad.apply(out)
        except (RuntimeError, NotImplementedError):
            _GROUPED_OK[key] = False  # this device / dtype has no kernel: loop from now on
    blocks = x.split(counts.tolist())
    return torch.cat([block @ weights[g] for g, block in enumerate(blocks)])


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
        self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor
    ) -> tuple[torch.Tensor, int]:
        """x (T, H), indices/weights (T, k) -> (output (T, H), pairs dropped)."""
        if self.config.dispatch == "eager":
            keep = self._capacity_mask(indices)
            return self._eager(x, indices, weights * keep), int((~keep).sum())
        return self._grouped(x, indices, weights)

    def capacity(self, tokens: int) -> int | None:
        c = self.config
        if c.capacity_factor is None:
            return None
        return max(1, math.ceil(c.capacity_factor * tokens * c.top_k / c.n_routed))

    def _capacity_mask(self, indices: torch.Tensor) -> torch.Tensor:
        """True for the (token, slot) pairs within their expert's capacity, in token order."""
        limit = self.capacity(indices.shape[0])
        if limit is None:
            return torch.ones_like(indices, dtype=torch.bool)
        flat = indices.reshape(-1)
        one_hot = F.one_hot(flat, self.config.n_routed)
        rank = (one_hot.cumsum(0) * one_hot).sum(-1) - 1  # position within its expert
        return (rank < limit).view_as(indices)

    def _grouped(
        self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor
    ) -> tuple[torch.Tensor, int]:
        n_experts, k = self.config.n_routed, indices.shape[1]
        flat = indices.reshape(-1)
        flat_weights = weights.reshape(-1)
        dropped = 0
        if self.config.capacity_factor is not None:
            keep = self._capacity_mask(indices).reshape(-1)
            dropped = int((~keep).sum())
            flat = flat.masked_fill(~keep, n_experts)  # a virtual expert nobody computes
        order = flat.argsort(stable=True)
        counts = torch.bincount(flat, minlength=n_experts + 1)[:n_experts]
        order = order[: int(counts.sum())]
        tokens = order // k
        xs = x[tokens]
        hidden = grouped_mm(xs, self.gate_up_proj.transpose(1, 2), counts)
        gate, up = hidden.chunk(2, dim=-1)
        # weight the (narrow) activations rather than the (wide) outputs: same product
        act = F.silu(gate) * up * flat_weights[order].unsqueeze(-1).to(x.dtype)
        ys = grouped_mm(act, self.down_proj.transpose(1, 2), counts)
        out = torch.zeros_like(x)
        return out.index_add(0, tokens, ys), dropped

    def _eager(self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        for expert in range(self.config.n_routed):
            token, slot = torch.where(indices == expert)
            if token.numel() == 0:
                continue
            gate, up = F.linear(x[token], self.gate_up_proj[expert]).chunk(2, dim=-1)
            y = F.linear(F.silu(gate) * up, self.down_proj[expert])
            out = out.index_add(0, token, y * weights[token, slot, None].to(y.dtype))
        return out
