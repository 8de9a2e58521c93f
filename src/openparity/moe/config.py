"""What a DeepSeekMoE layer is made of: experts, router, balancing and dispatch settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

RouterKind = Literal["softmax", "sigmoid"]
Dispatch = Literal["auto", "grouped", "batched", "eager"]  # see experts.py


@dataclass(frozen=True)
class MoEConfig:
    """One MoE feed-forward layer.

    Routed experts are fine-grained SwiGLU FFNs of width `expert_dim`; `n_shared` shared experts
    (one SwiGLU of width n_shared x expert_dim) see every token. Router "softmax" is DeepSeekMoE
    v1 / Mixtral; "sigmoid" is DeepSeek-V2/V3 (sigmoid affinities, top-k normalised, scaled by
    `routed_scaling`, optionally limited to `topk_groups` of `n_groups` expert groups).
    """

    hidden: int
    expert_dim: int
    n_routed: int
    top_k: int
    n_shared: int = 0
    router: RouterKind = "softmax"
    norm_topk: bool = True
    routed_scaling: float = 1.0
    n_groups: int = 1  # expert groups (devices) for group-limited routing
    topk_groups: int = 1
    # balancing
    expert_aux_alpha: float = 0.0  # DeepSeekMoE expert-level balance loss
    device_aux_alpha: float = 0.0  # device-level balance loss over n_groups devices
    seq_aux_alpha: float = 0.0  # DeepSeek-V3 sequence-wise balance loss
    bias_update_speed: float = 0.0  # aux-loss-free balancing: gamma (0 = off)
    # dispatch
    dispatch: Dispatch = "auto"
    capacity_factor: float | None = None  # None = dropless

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= self.n_routed:
            raise ValueError(f"top_k must lie in [1, {self.n_routed}], got {self.top_k}")
        if self.n_routed % self.n_groups:
            raise ValueError("n_routed must be a multiple of n_groups")
        if not 1 <= self.topk_groups <= self.n_groups:
            raise ValueError("topk_groups must lie in [1, n_groups]")
        if self.topk_groups * (self.n_routed // self.n_groups) < self.top_k:
            raise ValueError("topk_groups x experts per group must be at least top_k")
        if self.capacity_factor is not None and self.capacity_factor <= 0:
            raise ValueError("capacity_factor must be positive")

    @property
    def active_params(self) -> int:
        """Expert parameters one token uses: k routed + the shared experts (router excluded)."""
        return 3 * self.hidden * self.expert_dim * (self.top_k + self.n_shared)

    @property
    def total_params(self) -> int:
        return 3 * self.hidden * self.expert_dim * (self.n_routed + self.n_shared)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
