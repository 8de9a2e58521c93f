"""Load balancing: the DeepSeekMoE auxiliary losses, DeepSeek-V3's sequence-wise loss, the
auxiliary-loss-free bias update, and MaxVio.

Notation of the papers: N' routed experts, K' chosen per token, T tokens; for expert i,
f_i = N' / (K' T) * #{tokens that chose i}  and  P_i = (1/T) * sum_t s_{i,t}.
"""

from __future__ import annotations

import torch

from openparity.moe.config import MoEConfig


def expert_load(indices: torch.Tensor, n_experts: int) -> torch.Tensor:
    """Tokens routed to each expert (float, shape (E,))."""
    return torch.bincount(indices.reshape(-1), minlength=n_experts).float()


def _fractions(
    indices: torch.Tensor, n_experts: int, counts: torch.Tensor | None, tokens: int
) -> torch.Tensor:
    counts = expert_load(indices, n_experts) if counts is None else counts
    return counts * n_experts / (indices.shape[-1] * tokens)


# Under expert parallelism every rank routes its own tokens. `counts` (tokens per expert) and
# `tokens` then cover all ranks, and the affinities are summed here and divided by the global
# `tokens`: each rank's loss is its share, and the shares (like the replicated router's
# gradients) sum to the loss one process computes over all tokens. Defaults: these tokens only.


def expert_balance_loss(
    indices: torch.Tensor,
    affinities: torch.Tensor,
    alpha: float,
    *,
    counts: torch.Tensor | None = None,
    tokens: int | None = None,
) -> torch.Tensor:
    """DeepSeekMoE expert-level balance loss: alpha * sum_i f_i P_i (equals alpha at perfect
    balance with uniform affinities)."""
    tokens = tokens or indices.shape[0]
    f = _fractions(indices, affinities.shape[-1], counts, tokens)
    p = affinities.sum(dim=0) / tokens
    return alpha * (f * p).sum()


def device_balance_loss(
    indices: torch.Tensor,
    affinities: torch.Tensor,
    alpha: float,
    n_devices: int,
    *,
    counts: torch.Tensor | None = None,
    tokens: int | None = None,
) -> torch.Tensor:
    """DeepSeekMoE device-level balance loss over D equal groups of experts:
    alpha * sum_d f'_d P'_d with f'_d the mean f_i and P'_d the sum of P_i in group d."""
    tokens = tokens or indices.shape[0]
    f = _fractions(indices, affinities.shape[-1], counts, tokens).view(n_devices, -1).mean(dim=1)
    p = (affinities.sum(dim=0) / tokens).view(n_devices, -1).sum(dim=1)
    return alpha * (f * p).sum()


def sequence_balance_loss(
    indices: torch.Tensor,
    affinities: torch.Tensor,
    alpha: float,
    seq_len: int,
    *,
    sequences: int | None = None,
) -> torch.Tensor:
    """DeepSeek-V3 sequence-wise balance loss: the expert-level loss inside each sequence
    (tokens laid out as (batch, seq_len)), with affinities normalised per token, averaged over
    `sequences` (default: these; all ranks' under expert parallelism)."""
    n_experts = affinities.shape[-1]
    k = indices.shape[-1]
    per_seq = indices.view(-1, seq_len, k)
    normalised = (affinities / affinities.sum(dim=-1, keepdim=True)).view(-1, seq_len, n_experts)
    chosen = per_seq.reshape(per_seq.shape[0], -1)
    counts = torch.zeros(per_seq.shape[0], n_experts, device=indices.device)
    counts.scatter_add_(1, chosen, torch.ones_like(chosen, dtype=counts.dtype))
    f = counts * n_experts / (k * seq_len)
    p = normalised.mean(dim=1)
    return alpha * (f * p).sum(dim=1).sum() / (sequences or per_seq.shape[0])


def aux_losses(
    config: MoEConfig,
    indices: torch.Tensor,
    affinities: torch.Tensor,
    seq_len: int,
    *,
    counts: torch.Tensor | None = None,
    tokens: int | None = None,
    sequences: int | None = None,
) -> torch.Tensor:
    """The sum of the balance losses `config` switches on (see the note above for the
    keyword arguments)."""
    c = config
    loss = torch.zeros((), device=affinities.device)
    if c.expert_aux_alpha:
        loss = loss + expert_balance_loss(
            indices, affinities, c.expert_aux_alpha, counts=counts, tokens=tokens
        )
    if c.device_aux_alpha:
        loss = loss + device_balance_loss(
            indices, affinities, c.device_aux_alpha, c.n_groups, counts=counts, tokens=tokens
        )
    if c.seq_aux_alpha:
        loss = loss + sequence_balance_loss(
            indices, affinities, c.seq_aux_alpha, seq_len, sequences=sequences
        )
    return loss


def max_violation(load: torch.Tensor) -> float:
    """MaxVio = (max_i load_i - mean load) / mean load; 0 is perfect balance."""
    mean = load.mean()
    return float((load.max() - mean) / mean) if mean > 0 else 0.0


@torch.no_grad()
def update_bias(bias: torch.Tensor, load: torch.Tensor, speed: float) -> None:
    """Auxiliary-loss-free balancing (DeepSeek-V3): raise the selection bias of under-loaded
    experts by `speed`, lower it for over-loaded ones; the bias never enters the weights."""
    bias += speed * torch.sign(load.mean() - load)
