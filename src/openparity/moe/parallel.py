"""Expert parallelism over torch.distributed: each rank holds E / world routed experts; router
and shared experts are replicated. A forward pass routes the rank's own tokens, sends each
(token, expert) pair to the rank owning the expert with one all-to-all, runs the local experts
with the layer's dropless dispatch, and sends the results back with a second all-to-all.
Differentiable: the backward of an all-to-all is the all-to-all with the splits reversed.

Balancing works across ranks as on one process: the expert load and the token counts of the
balance losses are all-reduced, so every rank's `aux_loss` is its share of the loss over all
tokens (the shares, like the replicated router's gradients, sum to the one-process values), and
`update_bias()` moves every rank's copy of the selection bias by the global load.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from openparity.moe import balance
from openparity.moe.experts import mix_experts
from openparity.moe.layer import MoELayer


class _AllToAll(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, send: list[int], receive: list[int], group) -> torch.Tensor:
        ctx.send, ctx.receive, ctx.group = send, receive, group
        out = x.new_empty((sum(receive), *x.shape[1:]))
        dist.all_to_all_single(out, x.contiguous(), receive, send, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        back = grad.new_empty((sum(ctx.send), *grad.shape[1:]))
        dist.all_to_all_single(back, grad.contiguous(), ctx.send, ctx.receive, group=ctx.group)
        return back, None, None, None


def all_to_all(x: torch.Tensor, send: list[int], receive: list[int], group=None) -> torch.Tensor:
    """Rows x[send splits] go to ranks 0..world-1; returns the rows received from each."""
    return _AllToAll.apply(x, send, receive, group)


class ExpertParallelMoE(nn.Module):
    """The routed experts of `layer` split over the ranks of `group` (contiguous blocks)."""

    def __init__(self, layer: MoELayer, group=None) -> None:
        super().__init__()
        self.group = group
        self.world = dist.get_world_size(group)
        rank = dist.get_rank(group)
        c = layer.config
        if c.n_routed % self.world:
            raise ValueError(f"{c.n_routed} experts do not split over {self.world} ranks")
        if c.capacity_factor is not None:
            raise ValueError("expert parallelism here is dropless: unset capacity_factor")
        self.config = c
        self.local = c.n_routed // self.world
        block = slice(rank * self.local, (rank + 1) * self.local)
        self.router = layer.router
        self.shared = layer.shared
        self.gate_up_proj = nn.Parameter(layer.experts.gate_up_proj.detach()[block].clone())
        self.down_proj = nn.Parameter(layer.experts.down_proj.detach()[block].clone())
        self.aux_loss = torch.zeros(())
        # this rank's tokens per expert over the training forwards since update_bias()
        self.register_buffer("load", torch.zeros(c.n_routed), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        flat = x.reshape(-1, c.hidden)
        routing = self.router(flat)
        k = routing.indices.shape[1]
        experts = routing.indices.reshape(-1)
        order = experts.argsort(stable=True)  # sorted by expert, hence by owning rank
        sorted_experts = experts[order]
        send = torch.bincount(sorted_experts // self.local, minlength=self.world)
        receive = torch.empty_like(send)
        dist.all_to_all_single(receive, send, group=self.group)
        send_sizes, receive_sizes = send.tolist(), receive.tolist()
        tokens = all_to_all(flat[order // k], send_sizes, receive_sizes, self.group)
        local_ids = (
            all_to_all(
                (sorted_experts % self.local).unsqueeze(1).float(),
                send_sizes,
                receive_sizes,
                self.group,
            )
            .squeeze(1)
            .long()
        )
        # each received row is a "token" with one expert (its local id) and weight 1; the
        # sender applies the routing weights when the results come back
        results = mix_experts(
            tokens,
            local_ids.unsqueeze(1),
            torch.ones(local_ids.shape[0], 1, dtype=torch.float32, device=tokens.device),
            self.gate_up_proj,
            self.down_proj,
            c.dispatch if c.dispatch != "eager" else "auto",
        )
        returned = all_to_all(results, receive_sizes, send_sizes, self.group)
        weighted = returned * routing.weights.reshape(-1)[order].unsqueeze(-1).to(x.dtype)
        out = torch.zeros_like(flat).index_add(0, order // k, weighted)
        if self.shared is not None:
            out = out + self.shared(flat)
        self._balance(routing, x)
        return out.view(x.shape)

    def _balance(self, routing, x: torch.Tensor) -> None:
        c = self.config
        if not self.training:
            self.aux_loss = torch.zeros(())
            return
        counts = balance.expert_load(routing.indices, c.n_routed)
        self.load += counts
        if not (c.expert_aux_alpha or c.device_aux_alpha or c.seq_aux_alpha):
            self.aux_loss = torch.zeros(())
            return
        seq_len = x.shape[-2] if x.dim() >= 3 else x.shape[0]
        tokens = routing.indices.shape[0]
        totals = torch.cat([counts, torch.tensor([tokens, tokens // seq_len], dtype=counts.dtype)])
        dist.all_reduce(totals, group=self.group)
        self.aux_loss = balance.aux_losses(
            c,
            routing.indices,
            routing.affinities,
            seq_len,
            counts=totals[:-2],
            tokens=int(totals[-2]),
            sequences=int(totals[-1]),
        )

    def max_violation(self) -> float:
        """MaxVio of the load summed over all ranks (a collective: call it on every rank)."""
        load = self.load.clone()
        dist.all_reduce(load, group=self.group)
        return balance.max_violation(load)

    def update_bias(self) -> None:
        """One auxiliary-loss-free step from the global load (a collective: every rank)."""
        if self.config.bias_update_speed:
            load = self.load.clone()
            dist.all_reduce(load, group=self.group)
            if load.sum() > 0:
                balance.update_bias(self.router.bias, load, self.config.bias_update_speed)
        self.load.zero_()
