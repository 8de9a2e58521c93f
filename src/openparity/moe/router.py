"""Top-k routers. Softmax top-k (DeepSeekMoE v1, Mixtral) and sigmoid top-k with group-limited
selection, a selection-only bias (auxiliary-loss-free balancing) and a routed scaling factor
(DeepSeek-V2/V3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from openparity.moe.config import MoEConfig


@dataclass
class Routing:
    """For T tokens: chosen experts (T, k), their mixing weights (T, k), and the affinities
    the balance losses use (T, E): softmax probabilities, or normalised sigmoid scores."""

    indices: torch.Tensor
    weights: torch.Tensor
    affinities: torch.Tensor
    logits: torch.Tensor


class TopKRouter(nn.Module):
    def __init__(self, config: MoEConfig) -> None:
        super().__init__()
        self.config = config
        self.weight = nn.Parameter(torch.empty(config.n_routed, config.hidden))
        nn.init.normal_(self.weight, std=config.hidden**-0.5)
        # selection-only bias of auxiliary-loss-free balancing (never in the mixing weights)
        self.register_buffer("bias", torch.zeros(config.n_routed), persistent=True)

    def forward(self, x: torch.Tensor) -> Routing:
        """x: (T, hidden) -> Routing. Routing math runs in fp32 whatever the input dtype."""
        c = self.config
        logits = nn.functional.linear(x.float(), self.weight.float())
        if c.router == "softmax":
            scores = logits.softmax(dim=-1)
            choice = scores + self.bias
        else:
            scores = logits.sigmoid()
            choice = scores + self.bias
        if c.n_groups > 1 and c.topk_groups < c.n_groups:
            choice = self._limit_groups(choice)
        indices = choice.topk(c.top_k, dim=-1, sorted=False).indices
        weights = scores.gather(1, indices)
        if c.norm_topk:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        weights = weights * c.routed_scaling
        affinities = scores if c.router == "softmax" else scores / scores.sum(-1, keepdim=True)
        return Routing(indices, weights, affinities, logits)

    def _limit_groups(self, choice: torch.Tensor) -> torch.Tensor:
        """Keep the `topk_groups` groups whose two best experts score highest (DeepSeek-V3)."""
        c = self.config
        grouped = choice.view(-1, c.n_groups, c.n_routed // c.n_groups)
        best = grouped.topk(min(2, grouped.shape[-1]), dim=-1).values.sum(dim=-1)
        keep = best.topk(c.topk_groups, dim=-1, sorted=False).indices
        mask = torch.zeros_like(best, dtype=torch.bool).scatter_(1, keep, True)
        return choice.masked_fill(
            ~mask.repeat_interleave(c.n_routed // c.n_groups, dim=1), -torch.inf
        )
