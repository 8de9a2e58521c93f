"""Training FLOPs of sparse training, counted the way the RigL paper counts them: what a kernel
that skips zero weights would execute (the masked dense matmuls run here do not skip them).

Per token, a forward pass costs f = f_dense - sum_l 2 (1 - d_l) u_l, where layer l holds u_l
multiply-adds per token at density 1 (its weights; an expert stack only its top-k share) and
d_l is its density. A training step costs 3 f (forward; backward to the inputs; backward to the
weights), except RigL's update steps, whose weight gradient is dense: 2 f + f_dense.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from openparity.sparse.masks import EXPERT_STACKS, MaskedWeight


def multiply_adds_per_token(weight: MaskedWeight) -> float:
    """u_l: multiply-adds one token spends on this weight when it is dense."""
    config = getattr(weight.module, "config", None)
    if weight.attribute in EXPERT_STACKS and hasattr(config, "top_k"):
        return weight.numel * config.top_k / config.n_routed
    return float(weight.numel)


@dataclass(frozen=True)
class TrainingFlops:
    total: float  # FLOPs over the whole run
    dense_total: float  # the same run with every weight dense
    forward_per_token: float  # at the final masks

    @property
    def ratio(self) -> float:
        return self.total / self.dense_total


def training_flops(
    weights: list[MaskedWeight],
    dense_forward_per_token: float,
    active_at: Callable[[int], list[int]],
    is_update_step: Callable[[int], bool],
    dense_gradient_on_updates: bool,
    steps: int,
    tokens_per_step: int,
) -> TrainingFlops:
    """Sum the per-step cost over `steps`; `active_at(step)` gives each layer's active weights
    during that step, `is_update_step(step)` whether masks change after it."""
    use = [multiply_adds_per_token(w) for w in weights]

    def forward(active: list[int]) -> float:
        saved = sum(2 * (1 - a / w.numel) * u for a, w, u in zip(active, weights, use, strict=True))
        return dense_forward_per_token - saved

    total, active = 0.0, active_at(0)
    for step in range(1, steps + 1):
        f = forward(active)
        dense_grad = dense_gradient_on_updates and is_update_step(step)
        total += (2 * f + dense_forward_per_token if dense_grad else 3 * f) * tokens_per_step
        if is_update_step(step):
            active = active_at(step)
    return TrainingFlops(
        total, 3 * dense_forward_per_token * tokens_per_step * steps, forward(active_at(steps))
    )
