"""Load balancing: the DeepSeekMoE auxiliary losses, DeepSeek-V3's sequence-wise loss, the
auxiliary-loss-free bias update, and MaxVio.

Notation of the papers: N' routed experts, K' chosen per token, T tokens; for expert i,
f_i = N' / (K' T) * #{tokens that chose i}  and  P_i = (1/T) * sum_t s_{i,t}.
"""

from __future__ import annotations

import torch


def expert_load(indices: torch.Tensor, n_experts: int) -> torch.Tensor:
    """Tokens routed to each expert (float, shape (E,))."""
    return torch.bincount(indices.reshape(-1), minlength=n_experts).float()


def _fractions(indices: torch.Tensor, n_experts: int) -> torch.Tensor:
    tokens, k = indices.shape
    return expert_load(indices, n_experts) * n_experts / (k * tokens)


def expert_balance_loss(
    indices: torch.Tensor, affinities: torch.Tensor, alpha: float
) -> torch.Tensor:
    """DeepSeekMoE expert-level balance loss: alpha * sum_i f_i P_i (equals alpha at perfect
    balance with uniform affinities)."""
    n_experts = affinities.shape[-1]
    f = _fractions(indices, n_experts)
    p = affinities.mean(dim=0)
    return alpha * (f * p).sum()


def device_balance_loss(
    indices: torch.Tensor, affinities: torch.Tensor, alpha: float, n_devices: int
) -> torch.Tensor:
    """DeepSeekMoE device-level balance loss over D equal groups of experts:
    alpha * sum_d f'_d P'_d with f'_d the mean f_i and P'_d the sum of P_i in group d."""
    n_experts = affinities.shape[-1]
    f = _fractions(indices, n_experts).view(n_devices, -1).mean(dim=1)
    p = affinities.mean(dim=0).view(n_devices, -1).sum(dim=1)
    return alpha * (f * p).sum()


def sequence_balance_loss(
    indices: torch.Tensor, affinities: torch.Tensor, alpha: float, seq_len: int
) -> torch.Tensor:
    """DeepSeek-V3 sequence-wise balance loss: the expert-level loss inside each sequence
    (tokens laid out as (batch, seq_len)), with affinities normalised per token, averaged."""
    n_experts = affinities.shape[-1]
    k = indices.shape[-1]
    per_seq = indices.view(-1, seq_len, k)
    normalised = (affinities / affinities.sum(dim=-1, keepdim=True)).view(-1, seq_len, n_experts)
    chosen = per_seq.reshape(per_seq.shape[0], -1)
    counts = torch.zeros(per_seq.shape[0], n_experts, device=indices.device)
    counts.scatter_add_(1, chosen, torch.ones_like(chosen, dtype=counts.dtype))
    f = counts * n_experts / (k * seq_len)
    p = normalised.mean(dim=1)
    return alpha * (f * p).sum(dim=1).mean()


def max_violation(load: torch.Tensor) -> float:
    """MaxVio = (max_i load_i - mean load) / mean load; 0 is perfect balance."""
    mean = load.mean()
    return float((load.max() - mean) / mean) if mean > 0 else 0.0


@torch.no_grad()
def update_bias(bias: torch.Tensor, load: torch.Tensor, speed: float) -> None:
    """Auxiliary-loss-free balancing (DeepSeek-V3): raise the selection bias of under-loaded
    experts by `speed`, lower it for over-loaded ones; the bias never enters the weights."""
    bias += speed * torch.sign(load.mean() - load)
