"""How dense each masked layer is, for a target sparsity over the masked layers.

uniform  every layer at the target density (the RigL paper's "uniform"; layers kept dense by
         option do not count towards the target).
er, erk  Erdős–Rényi(-Kernel) (Mocanu et al. 2018; Evci et al. 2020): density of layer l is
         eps * (sum of its shape / product of its shape) ** power, with eps chosen so the
         masked layers together keep exactly (1 - sparsity) of their weights. A layer whose
         density would exceed 1 is made dense and eps is solved again for the rest. For linear
         layers ER and ERK agree; ERK adds a convolution's kernel dims to the sum and product.

`dense_first` / `dense_last` keep the first / last masked layer dense (the paper's option for
the first convolution and the classifier); such layers are left out of the budget, as in the
paper's code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

Distribution = Literal["uniform", "er", "erk"]


def layer_densities(
    shapes: Sequence[tuple[int, ...]],
    numels: Sequence[int],
    sparsity: float,
    distribution: Distribution = "erk",
    *,
    dense: Sequence[bool] | None = None,
    power: float = 1.0,
) -> list[float]:
    """Density in (0, 1] of each layer. `shapes` are the matrices ERK reads (an expert stack
    counts as one expert's matrix), `numels` the weights each layer holds, `dense[i]` keeps
    layer i dense and outside the budget."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must lie in [0, 1), got {sparsity}")
    dense = list(dense) if dense is not None else [False] * len(shapes)
    if distribution == "uniform":
        return [1.0 if d else 1.0 - sparsity for d in dense]
    if distribution not in ("er", "erk"):
        raise ValueError(f"unknown distribution {distribution!r}: uniform, er or erk")
    raw = [
        (sum(_er_dims(s, distribution)) / math.prod(_er_dims(s, distribution))) ** power
        for s in shapes
    ]
    saturated = [False] * len(shapes)  # made dense because eps * raw exceeded 1
    while True:
        budget = sum(
            (1.0 - sparsity) * n - (n if sat else 0)
            for n, sat, d in zip(numels, saturated, dense, strict=True)
            if not d
        )
        free = [
            i for i in range(len(shapes)) if not dense[i] and not saturated[i]
        ]  # layers eps scales
        divisor = sum(raw[i] * numels[i] for i in free)
        eps = budget / divisor if divisor else 0.0
        over = [i for i in free if eps * raw[i] > 1.0]
        if not over:
            break
        top = max(raw[i] for i in over)
        for i in over:
            if raw[i] == top:
                saturated[i] = True
    return [1.0 if dense[i] or saturated[i] else eps * raw[i] for i in range(len(shapes))]


def _er_dims(shape: tuple[int, ...], distribution: Distribution) -> tuple[int, ...]:
    """ER looks at a convolution's in/out channels only; ERK at every dimension."""
    return shape if distribution == "erk" or len(shape) <= 2 else shape[:2]


def active_count(numel: int, density: float) -> int:
    """Weights a layer of `numel` keeps at `density` (at least one)."""
    return max(1, min(numel, round(density * numel)))
