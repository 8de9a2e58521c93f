"""Layer densities: ERK against a hand-computed example, budgets, dense-first/last."""

from __future__ import annotations

import math

import pytest

from openparity.sparse.density import active_count, layer_densities


def test_erk_matches_the_formula_by_hand():
    # two linear layers 100x10 and 10x10 at 80 % sparsity:
    # raw = (100+10)/1000 = 0.11 and (10+10)/100 = 0.2
    # eps * (0.11*1000 + 0.2*100) = 0.2 * 1100  ->  eps = 220 / 130
    eps = 220 / 130
    densities = layer_densities([(100, 10), (10, 10)], [1000, 100], 0.8, "erk")
    assert densities == pytest.approx([0.11 * eps, 0.2 * eps])
    assert 1000 * densities[0] + 100 * densities[1] == pytest.approx(0.2 * 1100)


def test_erk_saturated_layer_becomes_dense_and_the_rest_is_solved_again():
    # a tiny layer (4x4, raw 0.5) would exceed density 1 at 50 % sparsity
    # first pass: eps (0.02*10000 + 0.5*16) = 0.5 * 10016 -> eps = 24.08, 0.5 eps > 1
    # second pass: layer 2 dense: eps * 200 = 5008 - 16 -> eps = 24.96
    densities = layer_densities([(100, 100), (4, 4)], [10000, 16], 0.5, "erk")
    assert densities[1] == 1.0
    assert densities[0] == pytest.approx(0.02 * (5008 - 16) / 200)
    assert 10000 * densities[0] + 16 == pytest.approx(0.5 * 10016)


def test_erk_counts_kernel_dims_and_er_does_not():
    conv, linear = (16, 8, 3, 3), (32, 16)
    erk = layer_densities([conv, linear], [math.prod(conv), math.prod(linear)], 0.9, "erk")
    er = layer_densities([conv, linear], [math.prod(conv), math.prod(linear)], 0.9, "er")
    assert erk != pytest.approx(er)
    raw_erk = [(16 + 8 + 3 + 3) / math.prod(conv), (32 + 16) / (32 * 16)]
    assert erk[0] / erk[1] == pytest.approx(raw_erk[0] / raw_erk[1])
    assert er[0] / er[1] == pytest.approx(((16 + 8) / (16 * 8)) / raw_erk[1])


def test_uniform_and_forced_dense_layers():
    assert layer_densities([(4, 4)] * 3, [16] * 3, 0.75, "uniform") == [0.25] * 3
    densities = layer_densities(
        [(4, 4), (8, 8), (4, 4)], [16, 64, 16], 0.75, "erk", dense=[True, False, True]
    )
    assert densities[0] == densities[2] == 1.0
    assert densities[1] == pytest.approx(0.25)  # forced-dense layers are outside the budget


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="sparsity"):
        layer_densities([(4, 4)], [16], 1.0)
    with pytest.raises(ValueError, match="distribution"):
        layer_densities([(4, 4)], [16], 0.5, "lognormal")  # type: ignore[arg-type]


def test_active_count_keeps_at_least_one_weight():
    assert active_count(1000, 0.1) == 100
    assert active_count(10, 0.01) == 1
