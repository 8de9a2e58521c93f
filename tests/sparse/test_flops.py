"""Sparse-aware training FLOPs against a count by hand."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from openparity.moe.config import MoEConfig  # noqa: E402
from openparity.moe.experts import RoutedExperts  # noqa: E402
from openparity.sparse import DynamicSparsity, SparseConfig  # noqa: E402
from openparity.sparse.flops import multiply_adds_per_token  # noqa: E402


def two_layers() -> nn.Module:
    return nn.Sequential(nn.Linear(100, 50, bias=False), nn.Linear(50, 10, bias=False))


@pytest.mark.parametrize("method", ["static", "set", "rigl"])
def test_training_flops_by_hand(method):
    model = two_layers()
    config = SparseConfig(method=method, sparsity=0.8, distribution="uniform", delta_t=10)
    sparsity = DynamicSparsity(model, config, total_steps=100)
    dense = 2.0 * (100 * 50 + 50 * 10)  # forward FLOPs per token
    sparse = 2.0 * 0.2 * (100 * 50 + 50 * 10)
    flops = sparsity.training_flops(dense, tokens_per_step=8)
    updates = 7 if method == "rigl" else 0  # steps 10..70, below t_end = 75
    expected = 8 * ((100 - updates) * 3 * sparse + updates * (2 * sparse + dense))
    assert flops.total == pytest.approx(expected)
    assert flops.dense_total == pytest.approx(8 * 100 * 3 * dense)
    assert flops.forward_per_token == pytest.approx(sparse)


def test_pruning_pays_for_its_dense_start():
    model = two_layers()
    config = SparseConfig(method="prune", sparsity=0.8, distribution="uniform", delta_t=25, end=0.5)
    sparsity = DynamicSparsity(model, config, total_steps=100)
    weights = 100 * 50 + 50 * 10
    # masks change after steps 25 and 50: 1 - 0.8 * (1 - (1 - 25/50)^3) = 0.3 kept, then 0.2
    densities = [1.0] * 25 + [0.3] * 25 + [0.2] * 50
    expected = sum(3 * 2.0 * weights * d for d in densities)
    flops = sparsity.training_flops(2.0 * weights, tokens_per_step=1)
    assert flops.total == pytest.approx(expected, rel=1e-3)


def test_an_expert_stack_counts_only_its_top_k_share_per_token():
    experts = RoutedExperts(MoEConfig(hidden=8, expert_dim=4, n_routed=8, top_k=2))
    sparsity = DynamicSparsity(experts, SparseConfig(sparsity=0.5), total_steps=10)
    gate_up = next(w for w in sparsity.weights if w.attribute == "gate_up_proj")
    # (experts, 2 x expert_dim, hidden) = (8, 8, 8); a token meets 2 of the 8 experts
    assert multiply_adds_per_token(gate_up) == 8 * (2 * 4) * 8 * 2 / 8


def test_the_pruning_trajectory_matches_the_update_steps():
    model = two_layers()
    config = SparseConfig(method="prune", sparsity=0.9, delta_t=7, start=0.1, end=0.8)
    sparsity = DynamicSparsity(model, config, total_steps=100)
    last = 0
    for step in range(0, 120):
        if step and sparsity.is_update_step(step):
            last = step
        assert sparsity._last_prune(step) == last, step
