"""One mask update of one layer: which weights leave and which join.

Drop-and-grow (RigL, SET): the k active weights of smallest magnitude leave; the k positions
with the highest grow score among all not kept (the just-dropped included) join. RigL's score is
the dense gradient's magnitude, SET's a random number. A joining weight that was inactive
starts at zero; one dropped and grown again in the same update simply stays.
Pruning: the active weights of smallest magnitude leave until `keep` remain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Swap:
    """What one update did to one layer (flat indices)."""

    new_mask: torch.Tensor  # bool, flat
    dropped: torch.Tensor  # active before, inactive now
    grown: torch.Tensor  # inactive before, active now (their weights start at zero)
    k: int  # the scheduled swap size: weights removed from the kept set, and regrown

    @property
    def changed(self) -> torch.Tensor:
        return torch.cat([self.dropped, self.grown])


def drop_and_grow(
    weight: torch.Tensor, mask: torch.Tensor, grow_score: torch.Tensor, k: int
) -> Swap:
    """Drop the k smallest |weight| among active, grow the k highest `grow_score` among the
    rest. All tensors are flattened; `mask` is bool."""
    weight, mask, grow_score = weight.reshape(-1), mask.reshape(-1), grow_score.reshape(-1)
    kept = mask.clone()
    if k > 0:
        magnitude = weight.abs().float().masked_fill(~mask, float("inf"))
        kept[torch.topk(magnitude, k, largest=False).indices] = False
        score = grow_score.float().masked_fill(kept, float("-inf"))
        kept[torch.topk(score, k).indices] = True
    return Swap(kept, (mask & ~kept).nonzero().view(-1), (kept & ~mask).nonzero().view(-1), k)


def prune_to(weight: torch.Tensor, mask: torch.Tensor, keep: int) -> Swap:
    """Keep the `keep` largest |weight| among the active ones."""
    weight, mask = weight.reshape(-1), mask.reshape(-1)
    remove = max(0, int(mask.sum()) - keep)
    kept = mask.clone()
    if remove:
        magnitude = weight.abs().float().masked_fill(~mask, float("inf"))
        kept[torch.topk(magnitude, remove, largest=False).indices] = False
    return Swap(
        kept, (mask & ~kept).nonzero().view(-1), kept.new_empty(0, dtype=torch.long), remove
    )


def random_mask(numel: int, active: int, generator: torch.Generator) -> torch.Tensor:
    """A flat bool mask with exactly `active` ones, uniformly placed."""
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[torch.randperm(numel, generator=generator)[:active]] = True
    return mask
