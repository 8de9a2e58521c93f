"""DynamicSparsity on real training loops: exact sparsity, the cosine drop/grow schedule, zero
starts, masked weights that stay zero under AdamW, pruning's cubic, checkpoints and export."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from openparity.moe.lm import CausalLM, preset  # noqa: E402
from openparity.sparse import (  # noqa: E402
    DynamicSparsity,
    SparseConfig,
    SparseError,
    is_masked,
    with_masks_applied,
)
from openparity.sparse.density import active_count  # noqa: E402
from openparity.sparse.schedule import pruned_fraction, swap_count, update_fraction  # noqa: E402


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5)
    )


def batches(n: int, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    target = torch.randn(20, 5, generator=generator)
    for _ in range(n):
        x = torch.randn(32, 20, generator=generator)
        yield x, (x @ target).argmax(-1)


def run(model, sparsity, optimizer, steps, on_step=None):
    for step, (x, y) in enumerate(batches(steps), start=1):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        before = {w.name: w.mask.clone() for w in sparsity.weights}
        optimizer.step()
        if on_step:
            on_step(step, before)
    return loss.item()


def expected_active(sparsity: DynamicSparsity) -> list[int]:
    return [
        active_count(w.numel, d) for w, d in zip(sparsity.weights, sparsity.densities, strict=True)
    ]


@pytest.mark.parametrize("method", ["rigl", "set", "static"])
@pytest.mark.parametrize("distribution", ["uniform", "erk"])
def test_every_layer_keeps_its_exact_sparsity(method, distribution):
    model = mlp()
    config = SparseConfig(method=method, sparsity=0.8, distribution=distribution, delta_t=3)
    sparsity = DynamicSparsity(model, config, total_steps=40)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    sparsity.attach(optimizer)
    wanted = expected_active(sparsity)
    assert [w.active() for w in sparsity.weights] == wanted

    def check(step, before):
        assert [w.active() for w in sparsity.weights] == wanted, step

    run(model, sparsity, optimizer, 40, check)
    total = sum(w.numel for w in sparsity.weights)
    assert sum(wanted) / total == pytest.approx(0.2, abs=2 / total)
    if method != "static":
        assert sparsity.history, "no mask update happened"
    else:
        assert not sparsity.history


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_drop_and_grow_follow_the_cosine_schedule_and_grown_weights_start_at_zero(method):
    model = mlp()
    config = SparseConfig(method=method, sparsity=0.9, delta_t=4, alpha=0.3, end=0.75)
    sparsity = DynamicSparsity(model, config, total_steps=40)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    sparsity.attach(optimizer)
    seen_steps = []

    def check(step, before):
        records = [r for r in sparsity.history if r.step == step]
        if not records:
            return
        seen_steps.append(step)
        fraction = update_fraction(step, 0.3, 30)
        for weight, record in zip(sparsity.weights, records, strict=True):
            old, new = before[weight.name].view(-1), weight.mask.view(-1)
            assert record.k == swap_count(int(old.sum()), fraction)
            grown = new & ~old
            assert record.dropped == record.grown == int(grown.sum()) == int((old & ~new).sum())
            assert record.grown <= record.k
            # new connections start at zero, before and after the forward sees them
            assert (weight.original.detach().view(-1)[grown] == 0).all()
            state = optimizer.state[weight.original]
            for key in ("exp_avg", "exp_avg_sq"):
                assert (state[key].view(-1)[grown] == 0).all()

    run(model, sparsity, optimizer, 40, check)
    assert seen_steps == [4, 8, 12, 16, 20, 24, 28]  # multiples of delta_t below t_end = 30
    ks = [sum(r.k for r in sparsity.history if r.step == s) for s in seen_steps]
    assert ks == sorted(ks, reverse=True) and ks[0] > ks[-1] > 0  # cosine decay
    assert sum(r.grown for r in sparsity.history) > 0.5 * sum(ks)


def test_masked_weights_stay_zero_through_adamw_with_weight_decay():
    model = mlp()
    sparsity = DynamicSparsity(
        model, SparseConfig(method="rigl", sparsity=0.9, delta_t=5), total_steps=30
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-2, weight_decay=0.5)
    sparsity.attach(optimizer)

    def check(step, before):
        for weight in sparsity.weights:
            inactive = ~weight.mask
            assert (weight.original.detach()[inactive] == 0).all(), (step, weight.name)
            assert (getattr(weight.module, weight.attribute).detach()[inactive] == 0).all()

    run(model, sparsity, optimizer, 30, check)


def test_the_dense_gradient_is_kept_only_on_update_steps():
    model = mlp()
    sparsity = DynamicSparsity(
        model, SparseConfig(method="rigl", sparsity=0.9, delta_t=5), total_steps=40
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sparsity.attach(optimizer)
    for step, (x, y) in enumerate(batches(40), start=1):
        nn.functional.cross_entropy(model(x), y).backward()
        kept = [w.parametrization.dense_grad for w in sparsity.weights]
        if step % 5 == 0 and step < 30:
            for weight, grad in zip(sparsity.weights, kept, strict=True):
                assert grad is not None and grad.shape == weight.mask.shape
                # dense: it reaches inactive positions, where the weight's own grad is zero
                assert grad[~weight.mask].abs().sum() > 0
                assert (weight.original.grad[~weight.mask] == 0).all()
        else:
            assert all(g is None for g in kept), step
        optimizer.step()
        optimizer.zero_grad()


def test_a_rigl_update_without_a_backward_says_what_to_do():
    model = mlp()
    sparsity = DynamicSparsity(model, SparseConfig(method="rigl", delta_t=1), total_steps=10)
    with pytest.raises(SparseError, match="dense gradient"):
        sparsity.step()


def test_gradual_pruning_follows_the_cubic_and_never_regrows():
    model = mlp()
    sparsity = DynamicSparsity(
        model, SparseConfig(method="prune", sparsity=0.9, delta_t=4, end=0.75), total_steps=40
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sparsity.attach(optimizer)
    assert all(w.active() == w.numel for w in sparsity.weights)  # dense to sparse

    def check(step, before):
        for weight, density in zip(sparsity.weights, sparsity.densities, strict=True):
            assert not (weight.mask & ~before[weight.name]).any()  # nothing comes back
            if any(r.step == step for r in sparsity.history):
                reached = pruned_fraction(step, 0, 30)
                assert weight.active() == active_count(weight.numel, 1 - (1 - density) * reached)

    run(model, sparsity, optimizer, 40, check)
    assert sparsity.overall_sparsity() == pytest.approx(0.9, abs=1e-3)
    assert max(r.step for r in sparsity.history) == 30


def test_embeddings_norms_and_tied_heads_stay_dense_and_patterns_choose():
    model = CausalLM(preset("moe-active", dim=32, n_layers=2))
    sparsity = DynamicSparsity(model, SparseConfig(sparsity=0.5), total_steps=10)
    names = [w.name for w in sparsity.weights]
    assert "layers.0.mlp.experts.gate_up_proj" in names and "lm_head.weight" in names
    assert not any("embed" in n or "norm" in n or "router" in n for n in names)

    tied = CausalLM(preset("dense", dim=32, n_layers=1))
    tied.lm_head.weight = tied.embed_tokens.weight
    names = [w.name for w in DynamicSparsity(tied, SparseConfig(), total_steps=10).weights]
    assert "lm_head.weight" not in names  # masking it would mask the embedding

    only_mlp = CausalLM(preset("dense", dim=32, n_layers=2))
    config = SparseConfig(include=("layers.*.mlp.*",), exclude=("layers.1.*",))
    names = [w.name for w in DynamicSparsity(only_mlp, config, total_steps=10).weights]
    assert names == [f"layers.0.mlp.{p}_proj.weight" for p in ("gate", "up", "down")]
    with pytest.raises(SparseError, match="no weight"):
        DynamicSparsity(mlp(), SparseConfig(include=("nothing.*",)), total_steps=10)


def test_checkpoint_round_trip_resumes_the_same_trajectory():
    def fresh():
        model = mlp()
        sparsity = DynamicSparsity(
            model, SparseConfig(method="set", sparsity=0.8, delta_t=3), total_steps=30
        )
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        return model, sparsity.attach(optimizer), optimizer

    model, sparsity, optimizer = fresh()
    data = list(batches(30))

    def train(model, optimizer, part):
        for x, y in part:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()

    train(model, optimizer, data[:10])
    saved = copy.deepcopy(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "sparse": sparsity.state_dict(),
        }
    )
    train(model, optimizer, data[10:])

    again, sparsity2, optimizer2 = fresh()
    again.load_state_dict(saved["model"])
    optimizer2.load_state_dict(saved["optimizer"])
    sparsity2.load_state_dict(saved["sparse"])
    train(again, optimizer2, data[10:])
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, msg=name)
    assert sparsity2.history == sparsity.history


def test_masks_applied_give_a_plain_module_with_the_same_outputs():
    model = mlp()
    DynamicSparsity(model, SparseConfig(sparsity=0.7), total_steps=10)
    plain = with_masks_applied(model)
    assert is_masked(model) and not is_masked(plain)
    assert set(plain.state_dict()) == set(mlp().state_dict())
    x = torch.randn(4, 20)
    torch.testing.assert_close(plain(x), model(x))
    with_masks_applied(model)
    torch.testing.assert_close(model(x), plain(x))  # the original is left as it was
    zeros = sum(int((p == 0).sum()) for n, p in plain.named_parameters() if n.endswith("weight"))
    assert zeros >= 0.69 * sum(p.numel() for n, p in plain.named_parameters() if "weight" in n)


def test_a_masked_model_compiles_and_trains_like_eager():
    """torch.compile traces through the parametrizations (aot_eager: no C++ toolchain needed)."""
    eager, compiled_source = mlp(), mlp()
    for model in (eager, compiled_source):
        DynamicSparsity(model, SparseConfig(method="static", sparsity=0.8), total_steps=10)
    compiled = torch.compile(compiled_source, backend="aot_eager")
    x, y = next(batches(1))
    losses = []
    for model in (eager, compiled):
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0])
    grads = [
        dict(m.named_parameters())["0.parametrizations.weight.original"].grad
        for m in (eager, compiled_source)
    ]
    torch.testing.assert_close(grads[1], grads[0])
