"""Cross-check: RigL written again here, straight from the paper's Algorithm 1 (Evci et al.
2020), in NumPy with its own masks, forward pass and SGD, must take the same drop / grow
decisions as `DynamicSparsity` on the same MLP, seed, data and schedule.

    for each layer l, when t mod dT == 0 and t < T_end:
        k = alpha / 2 (1 + cos(pi t / T_end)) (1 - s_l) N_l
        I_drop = ArgTopK over active weights of -|theta_l|, k
        I_grow = ArgTopK over i not in (active \\ I_drop) of |grad_l|, k
        new connections are zero; momentum of changed connections is reset
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from openparity.sparse import DynamicSparsity, SparseConfig  # noqa: E402

STEPS, DELTA_T, ALPHA, END, LR, MOMENTUM = 60, 5, 0.3, 45, 0.05, 0.9


def reference_rigl(weights, masks, data):
    """Returns the masks after every update step: {step: [mask per layer]}."""
    weights = [w.astype(np.float64) * m for w, m in zip(weights, masks, strict=True)]
    momentum = [np.zeros_like(w) for w in weights]
    seen = {}
    for t, (x, y) in enumerate(data, start=1):
        grads = _grads(weights, masks, x, y)  # gradients of the masked (effective) weights
        for i in range(len(weights)):  # SGD with momentum on the active weights only
            momentum[i] = MOMENTUM * momentum[i] + grads[i] * masks[i]
            weights[i] = (weights[i] - LR * momentum[i]) * masks[i]
        if t % DELTA_T or t >= END:
            continue
        fraction = ALPHA / 2 * (1 + math.cos(math.pi * t / END))
        for i in range(len(weights)):
            active = masks[i].reshape(-1).astype(bool)
            k = math.floor(fraction * active.sum() + 0.5)
            flat_w = weights[i].reshape(-1)
            active_ids = np.flatnonzero(active)
            drop = active_ids[np.argsort(np.abs(flat_w[active_ids]), kind="stable")[:k]]
            kept = active.copy()
            kept[drop] = False
            candidates = np.flatnonzero(~kept)
            score = np.abs(grads[i].reshape(-1)[candidates])
            grow = candidates[np.argsort(-score, kind="stable")[:k]]
            new = kept.copy()
            new[grow] = True
            born = new & ~active
            flat_w[born] = 0.0
            changed = (new != active).reshape(weights[i].shape)
            momentum[i][changed] = 0.0
            masks[i] = new.reshape(masks[i].shape).astype(np.float64)
            weights[i] = flat_w.reshape(weights[i].shape) * masks[i]
        seen[t] = [m.copy() for m in masks]
    return seen


def _grads(weights, masks, x, y):
    """Backprop by hand through Linear-ReLU-Linear-ReLU-Linear (no biases), mean CE."""
    h = [x]
    for w in weights[:-1]:
        h.append(np.maximum(h[-1] @ w.T, 0.0))
    logits = h[-1] @ weights[-1].T
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    delta = p / len(y)
    grads = [None] * len(weights)
    for i in reversed(range(len(weights))):
        grads[i] = delta.T @ h[i]
        if i:
            delta = (delta @ weights[i]) * (h[i] > 0)
    return grads


def test_our_rigl_takes_the_papers_decisions():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(16, 48, bias=False),
        nn.ReLU(),
        nn.Linear(48, 48, bias=False),
        nn.ReLU(),
        nn.Linear(48, 4, bias=False),
    ).double()
    config = SparseConfig(
        method="rigl",
        sparsity=0.8,
        distribution="uniform",
        delta_t=DELTA_T,
        alpha=ALPHA,
        end=END / STEPS,
    )
    sparsity = DynamicSparsity(model, config, total_steps=STEPS)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    sparsity.attach(optimizer)
    initial_w = [w.original.detach().numpy().copy() for w in sparsity.weights]
    initial_m = [w.mask.numpy().astype(np.float64) for w in sparsity.weights]

    generator = np.random.default_rng(3)
    teacher = generator.normal(size=(16, 4))
    data = []
    for _ in range(STEPS):
        x = generator.normal(size=(24, 16))
        data.append((x, (x @ teacher).argmax(1)))

    ours = {}
    for t, (x, y) in enumerate(data, start=1):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        optimizer.step()
        if any(r.step == t for r in sparsity.history):
            ours[t] = [w.mask.numpy().astype(np.float64) for w in sparsity.weights]

    theirs = reference_rigl(initial_w, initial_m, data)
    assert sorted(ours) == sorted(theirs) == list(range(DELTA_T, END, DELTA_T))
    for t in theirs:
        for layer, (a, b) in enumerate(zip(ours[t], theirs[t], strict=True)):
            assert np.array_equal(a, b), f"step {t}, layer {layer}: {int((a != b).sum())} differ"
    changed = sum(r.grown for r in sparsity.history)
    assert changed > 100  # the decisions compared are real swaps, not no-ops
