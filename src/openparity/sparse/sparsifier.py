"""Dynamic sparse training for any PyTorch model and training loop.

    sparsity = DynamicSparsity(model, SparseConfig(method="rigl", sparsity=0.9), total_steps)
    optimizer = torch.optim.AdamW(model.parameters(), ...)   # before or after: same parameters
    sparsity.attach(optimizer)
    for batch in data:                     # the loop is unchanged
        loss(model, batch).backward()
        optimizer.step()                   # masks update here, every delta_t steps
        optimizer.zero_grad()

The forward pass always reads original * mask, so a masked weight is exactly zero whatever an
optimiser does. The stored original stays zero too: it is zeroed when its mask bit goes, its
gradient is masked, and its optimiser state is reset, so AdamW's momentum and decoupled decay
have nothing to move it with (tested). On update steps the layers drop and grow (RigL, SET) or
prune (gradual magnitude pruning), and RigL's dense gradient is kept only during the backward
of those steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import torch
from torch import nn

from openparity.errors import OpenparityError
from openparity.sparse import schedule
from openparity.sparse.density import Distribution, active_count, layer_densities
from openparity.sparse.masks import MaskedWeight, add_mask, maskable_weights
from openparity.sparse.updates import Swap, drop_and_grow, prune_to, random_mask

Method = Literal["rigl", "set", "static", "prune"]
METHODS: tuple[str, ...] = ("rigl", "set", "static", "prune")


class SparseError(OpenparityError):
    """Sparse training cannot be set up as asked."""


@dataclass(frozen=True)
class SparseConfig:
    """What to mask and how masks evolve.

    method        rigl (drop |W|, grow |dense grad|), set (drop |W|, grow at random), static
                  (the initial random masks stay), prune (dense to sparse, Zhu & Gupta)
    sparsity      share of masked-layer weights that are zero at the end (0.9 keeps 10 %)
    distribution  uniform, er or erk (see density.py)
    delta_t       steps between mask updates; alpha the initial update fraction (RigL / SET)
    end           mask updates stop at this share of the training steps (RigL paper: 0.75)
    start         pruning starts at this share of the steps (prune only)
    """

    method: Method = "rigl"
    sparsity: float = 0.9
    distribution: Distribution = "erk"
    delta_t: int = 100
    alpha: float = 0.3
    end: float = 0.75
    start: float = 0.0
    dense_first: bool = False
    dense_last: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    erk_power: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SparseError(f"unknown sparse method {self.method!r}", hint=", ".join(METHODS))
        if self.distribution not in ("uniform", "er", "erk"):
            raise SparseError(
                f"unknown layer distribution {self.distribution!r}", hint="uniform, er or erk"
            )
        if not 0.0 <= self.sparsity < 1.0:
            raise SparseError(f"sparsity must lie in [0, 1), got {self.sparsity}")
        if self.delta_t < 1 or not 0.0 <= self.start < self.end <= 1.0 or not 0 < self.alpha <= 1:
            raise SparseError("need delta_t >= 1, 0 <= start < end <= 1 and 0 < alpha <= 1")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SparseConfig:
        known = {f.name for f in fields(cls)}
        return cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        )


@dataclass(frozen=True)
class UpdateRecord:
    """One layer's mask update: the scheduled swap size and what actually changed."""

    step: int
    layer: str
    k: int
    dropped: int
    grown: int
    active: int


@dataclass
class DynamicSparsity:
    model: nn.Module
    config: SparseConfig
    total_steps: int
    weights: list[MaskedWeight] = field(init=False)
    densities: list[float] = field(init=False)  # target density of each masked layer
    step_count: int = field(init=False, default=0)
    history: list[UpdateRecord] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        c = self.config
        found = maskable_weights(self.model, c.include, c.exclude)
        if not found:
            raise SparseError(
                "no weight of this model matches the sparse include / exclude patterns",
                hint="patterns are fnmatch on parameter names, e.g. 'layers.*.mlp.*'",
            )
        self.weights = [add_mask(self.model, *entry) for entry in found]
        last = len(self.weights) - 1
        dense = [
            (c.dense_first and i == 0) or (c.dense_last and i == last)
            for i in range(len(self.weights))
        ]
        self.densities = layer_densities(
            [w.matrix_shape for w in self.weights],
            [w.numel for w in self.weights],
            c.sparsity,
            c.distribution,
            dense=dense,
            power=c.erk_power,
        )
        self._generator = torch.Generator().manual_seed(c.seed)
        self._optimizers: list[torch.optim.Optimizer] = []
        if c.method != "prune":  # pruning starts dense
            for weight, density in zip(self.weights, self.densities, strict=True):
                active = active_count(weight.numel, density)
                weight.set_mask(random_mask(weight.numel, active, self._generator))
        self._arm_capture()

    # -- the schedule --------------------------------------------------------------------------
    @property
    def t_end(self) -> int:
        return max(1, round(self.config.end * self.total_steps))

    @property
    def t_start(self) -> int:
        return round(self.config.start * self.total_steps)

    def is_update_step(self, step: int) -> bool:
        c = self.config
        if c.method == "static":
            return False
        if c.method == "prune":
            return schedule.is_update_step(step, c.delta_t, self.t_end, self.t_start) or (
                step == self.t_end
            )
        return schedule.is_update_step(step, c.delta_t, self.t_end - 1)

    def target_active(self, step: int) -> list[int]:
        """Active weights per layer after the updates up to `step` (pruning's trajectory; the
        constant targets for the other methods)."""
        if self.config.method != "prune":
            return [
                active_count(w.numel, d) for w, d in zip(self.weights, self.densities, strict=True)
            ]
        reached = schedule.pruned_fraction(self._last_prune(step), self.t_start, self.t_end)
        return [
            w.numel if reached == 0 else active_count(w.numel, 1 - (1 - d) * reached)
            for w, d in zip(self.weights, self.densities, strict=True)
        ]

    def _last_prune(self, step: int) -> int:
        """The last pruning step at or before `step` (0 before the first)."""
        if step >= self.t_end:
            return self.t_end
        last = step - step % self.config.delta_t
        return last if last > self.t_start else 0

    # -- the training-loop side ----------------------------------------------------------------
    def attach(self, optimizer: torch.optim.Optimizer) -> DynamicSparsity:
        """Run `step()` after every `optimizer.step()` of this optimiser (and `track` it)."""
        self.track(optimizer)
        optimizer.register_step_post_hook(lambda *_: self.step())
        return self

    def track(self, optimizer: torch.optim.Optimizer) -> DynamicSparsity:
        """Reset this optimiser's state of the weights a mask update changes; the caller runs
        `step()` after each optimiser step itself (as the Trainer callback does)."""
        originals = {id(w.original) for w in self.weights}
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        if not originals <= held:
            raise SparseError(
                "the optimiser does not hold the masked weights",
                hint="build it from model.parameters() of the model given to DynamicSparsity",
            )
        if optimizer not in self._optimizers:
            self._optimizers.append(optimizer)
        return self

    def set_progress(self, step: int, total_steps: int) -> None:
        """Where training stands (a trainer that resumes or only knows its length late)."""
        self.step_count, self.total_steps = step, total_steps
        self._arm_capture()

    @torch.no_grad()
    def step(self) -> list[UpdateRecord]:
        """After an optimiser step: update the masks if due."""
        self.step_count += 1
        records = self._update(self.step_count) if self.is_update_step(self.step_count) else []
        self._arm_capture()
        return records

    def _arm_capture(self) -> None:
        """Keep dense gradients during the next backward only when the next step updates."""
        wanted = self.config.method == "rigl" and self.is_update_step(self.step_count + 1)
        for weight in self.weights:
            weight.parametrization.capture = wanted
            if not wanted:
                weight.parametrization.dense_grad = None

    def _update(self, step: int) -> list[UpdateRecord]:
        c = self.config
        fraction = schedule.update_fraction(step, c.alpha, self.t_end)
        keep = self.target_active(step) if c.method == "prune" else None
        records = []
        for i, weight in enumerate(self.weights):
            if self.densities[i] >= 1.0:
                continue
            mask = weight.mask
            if keep is not None:
                swap = prune_to(weight.original, mask, keep[i])
            else:
                k = schedule.swap_count(int(mask.sum()), fraction)
                swap = drop_and_grow(weight.original, mask, self._grow_score(weight), k)
            self._apply(weight, swap)
            records.append(
                UpdateRecord(
                    step,
                    weight.name,
                    swap.k,
                    len(swap.dropped),
                    len(swap.grown),
                    int(weight.mask.sum()),
                )
            )
        self.history.extend(records)
        return records

    def _grow_score(self, weight: MaskedWeight) -> torch.Tensor:
        if self.config.method == "set":
            return torch.rand(weight.numel, generator=self._generator)
        grad = weight.parametrization.dense_grad
        if grad is None:
            raise SparseError(
                f"RigL needs the dense gradient of {weight.name} at step {self.step_count}",
                hint="run a backward pass before each optimizer.step()",
            )
        return grad.abs()

    def _apply(self, weight: MaskedWeight, swap: Swap) -> None:
        flat = weight.original.data.view(-1)
        flat[swap.grown] = 0.0  # new connections start at zero
        weight.set_mask(swap.new_mask)
        changed = swap.changed
        for optimizer in self._optimizers:
            for value in optimizer.state.get(weight.original, {}).values():
                if torch.is_tensor(value) and value.shape == weight.original.shape:
                    value.view(-1)[changed] = 0  # momentum and second moments start afresh

    # -- reporting and checkpoints -------------------------------------------------------------
    def layer_sparsity(self) -> dict[str, float]:
        return {w.name: 1.0 - w.active() / w.numel for w in self.weights}

    def overall_sparsity(self) -> float:
        total = sum(w.numel for w in self.weights)
        return 1.0 - sum(w.active() for w in self.weights) / total

    def state_dict(self) -> dict[str, Any]:
        """The schedule's state; the masks themselves are in the model's state_dict."""
        return {
            "config": self.config.to_dict(),
            "step": self.step_count,
            "generator": self._generator.get_state(),
            "history": [asdict(r) for r in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if SparseConfig.from_dict(state["config"]) != self.config:
            raise SparseError("the checkpoint was trained with other sparse settings")
        self.step_count = state["step"]
        self._generator.set_state(state["generator"])
        self.history = [UpdateRecord(**r) for r in state["history"]]
        self._arm_capture()

    def training_flops(self, dense_forward_per_token: float, tokens_per_step: int):
        """Sparse-aware FLOPs of a run of `total_steps` (see flops.py)."""
        from openparity.sparse.flops import training_flops

        return training_flops(
            self.weights,
            dense_forward_per_token,
            self.target_active,
            self.is_update_step,
            self.config.method == "rigl",
            self.total_steps,
            tokens_per_step,
        )
