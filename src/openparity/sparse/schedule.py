"""When masks change and by how much.

- RigL / SET (Evci et al. 2020, Algorithm 1): every `delta_t` steps until `t_end`, each layer
  drops and grows k = f(t) x (its active weights), with the cosine-decayed update fraction
  f(t) = alpha / 2 x (1 + cos(pi t / t_end)).
- Gradual magnitude pruning (Zhu & Gupta 2017): from dense at `t_start` to the target at
  `t_end`, pruning every `delta_t` steps, sparsity s_t = s_f (1 - (1 - (t - t_start) /
  (t_end - t_start)) ** 3).
"""

from __future__ import annotations

import math


def update_fraction(step: int, alpha: float, t_end: int) -> float:
    """RigL's cosine decay of the fraction of active weights replaced at `step`."""
    if step >= t_end:
        return 0.0
    return alpha / 2 * (1 + math.cos(math.pi * step / t_end))


def swap_count(active: int, fraction: float) -> int:
    """Weights dropped (and as many grown) in a layer with `active` weights."""
    return min(active, math.floor(fraction * active + 0.5))


def is_update_step(step: int, delta_t: int, t_end: int, t_start: int = 0) -> bool:
    """Masks change after optimiser step `step` (1-based) on multiples of delta_t before t_end
    (RigL / SET) or up to and including it (pruning reaches its target at t_end)."""
    return step > t_start and step % delta_t == 0 and step <= t_end


def pruned_fraction(step: int, t_start: int, t_end: int) -> float:
    """Zhu & Gupta's cubic: the share of the final sparsity reached at `step` (0 to 1)."""
    if step <= t_start:
        return 0.0
    if step >= t_end:
        return 1.0
    return 1.0 - (1.0 - (step - t_start) / (t_end - t_start)) ** 3
