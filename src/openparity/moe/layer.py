"""The DeepSeekMoE layer: fine-grained routed experts + always-on shared experts, top-k routing,
balance losses and auxiliary-loss-free balancing.

    layer = MoELayer(MoEConfig(hidden=512, expert_dim=128, n_routed=64, top_k=6, n_shared=2,
                               router="sigmoid", bias_update_speed=1e-3))
    y = layer(x)                  # x: (batch, seq, hidden)
    loss = task_loss + layer.aux_loss
    ...optimizer.step(); layer.update_bias()   # aux-loss-free balancing, once per step
"""

from __future__ import annotations

import torch
from torch import nn

from openparity.moe import balance
from openparity.moe.config import MoEConfig
from openparity.moe.experts import RoutedExperts, SwiGLU
from openparity.moe.router import TopKRouter


class MoELayer(nn.Module):
    def __init__(self, config: MoEConfig) -> None:
        super().__init__()
        self.config = config
        self.router = TopKRouter(config)
        self.experts = RoutedExperts(config)
        self.shared = (
            SwiGLU(config.hidden, config.n_shared * config.expert_dim) if config.n_shared else None
        )
        self.aux_loss = torch.zeros(())
        # tokens per expert over the training forwards since the last update_bias()
        self.register_buffer("load", torch.zeros(config.n_routed), persistent=False)
        self.dropped = 0  # (token, expert) pairs dropped by the capacity factor, last call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        flat = x.reshape(-1, c.hidden)
        routing = self.router(flat)
        shared = self.shared(flat) if self.shared is not None else None
        out, self.dropped = self.experts(flat, routing.indices, routing.weights, out=shared)
        if self.training:  # balancing counts training tokens only, never evaluation
            self.load += balance.expert_load(routing.indices, c.n_routed)
            seq_len = x.shape[-2] if x.dim() >= 3 else x.shape[0]
            self.aux_loss = balance.aux_losses(c, routing.indices, routing.affinities, seq_len)
        else:
            self.aux_loss = torch.zeros(())
        return out.view(x.shape)

    def max_violation(self) -> float:
        return balance.max_violation(self.load)

    def update_bias(self) -> None:
        """One auxiliary-loss-free step from the load since the last call (no-op when off)."""
        if self.config.bias_update_speed and self.load.sum() > 0:
            balance.update_bias(self.router.bias, self.load, self.config.bias_update_speed)
        self.reset_load()

    def reset_load(self) -> None:
        self.load.zero_()
