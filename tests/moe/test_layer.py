"""The MoE layer against Hugging Face transformers (copied weights, forward and gradients),
dispatch paths against each other, balance losses against hand-computed values."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from openparity.moe import balance  # noqa: E402
from openparity.moe.config import MoEConfig  # noqa: E402
from openparity.moe.layer import MoELayer  # noqa: E402

H, INNER, E, K = 32, 16, 8, 2


def grads(module, x):
    x = x.clone().requires_grad_(True)
    y = module(x)
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    named = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    return y.detach(), x.grad, named


def test_matches_hf_deepseek_v3_moe():
    from transformers.models.deepseek_v3.configuration_deepseek_v3 import DeepseekV3Config
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE

    torch.manual_seed(0)
    hf_config = DeepseekV3Config(
        hidden_size=H,
        moe_intermediate_size=INNER,
        n_routed_experts=E,
        num_experts_per_tok=K,
        n_shared_experts=2,
        n_group=4,
        topk_group=2,
        norm_topk_prob=True,
        routed_scaling_factor=2.5,
        hidden_act="silu",
    )
    hf = DeepseekV3MoE(hf_config).float()
    for p in hf.parameters():
        torch.nn.init.normal_(p, std=0.2)
    hf.gate.e_score_correction_bias.normal_(std=0.05)
    config = MoEConfig(
        hidden=H,
        expert_dim=INNER,
        n_routed=E,
        top_k=K,
        n_shared=2,
        router="sigmoid",
        routed_scaling=2.5,
        n_groups=4,
        topk_groups=2,
    )
    ours = MoELayer(config)
    with torch.no_grad():
        ours.router.weight.copy_(hf.gate.weight)
        ours.router.bias.copy_(hf.gate.e_score_correction_bias)
        ours.experts.gate_up_proj.copy_(hf.experts.gate_up_proj)
        ours.experts.down_proj.copy_(hf.experts.down_proj)
        for name in ("gate_proj", "up_proj", "down_proj"):
            getattr(ours.shared, name).weight.copy_(getattr(hf.shared_experts, name).weight)
    x = torch.randn(3, 10, H)
    y_hf, dx_hf, g_hf = grads(hf, x)
    y, dx, g = grads(ours, x)
    torch.testing.assert_close(y, y_hf, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dx, dx_hf, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g["experts.gate_up_proj"], g_hf["experts.gate_up_proj"])
    torch.testing.assert_close(g["experts.down_proj"], g_hf["experts.down_proj"])
    torch.testing.assert_close(g["router.weight"], g_hf["gate.weight"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g["shared.up_proj.weight"], g_hf["shared_experts.up_proj.weight"])


@pytest.mark.parametrize("dispatch", ["grouped", "batched", "eager"])
def test_matches_hf_mixtral_sparse_moe_block(dispatch):
    from transformers.models.mixtral.configuration_mixtral import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    torch.manual_seed(1)
    hf_config = MixtralConfig(
        hidden_size=H,
        intermediate_size=INNER,
        num_local_experts=E,
        num_experts_per_tok=K,
        router_jitter_noise=0.0,
    )
    hf = MixtralSparseMoeBlock(hf_config).float()
    for p in hf.parameters():
        torch.nn.init.normal_(p, std=0.2)
    ours = MoELayer(MoEConfig(hidden=H, expert_dim=INNER, n_routed=E, top_k=K, dispatch=dispatch))
    with torch.no_grad():
        ours.router.weight.copy_(hf.gate.weight)
        ours.experts.gate_up_proj.copy_(hf.experts.gate_up_proj)
        ours.experts.down_proj.copy_(hf.experts.down_proj)
    x = torch.randn(2, 12, H)
    y_hf, dx_hf, g_hf = grads(hf, x)
    y, dx, g = grads(ours, x)
    torch.testing.assert_close(y, y_hf, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dx, dx_hf, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g["router.weight"], g_hf["gate.weight"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g["experts.down_proj"], g_hf["experts.down_proj"])


def same_weights(config, **changes):
    first = MoELayer(config)
    second = MoELayer(MoEConfig(**{**config.to_dict(), **changes}))
    second.load_state_dict(first.state_dict())
    return first, second


@pytest.mark.parametrize("dispatch", ["grouped", "batched"])
def test_dropless_dispatch_agrees_with_eager_under_capacity_dropping(dispatch):
    torch.manual_seed(2)
    config = MoEConfig(
        hidden=H, expert_dim=INNER, n_routed=E, top_k=K, capacity_factor=0.5, dispatch=dispatch
    )
    sorted_layer, eager = same_weights(config, dispatch="eager")
    x = torch.randn(64, H)
    y_sorted, dx_sorted, g_sorted = grads(sorted_layer, x)
    y_eager, dx_eager, g_eager = grads(eager, x)
    assert sorted_layer.dropped == eager.dropped > 0  # half capacity must drop pairs
    with torch.no_grad():
        torch.testing.assert_close(sorted_layer(x), eager(x))
    torch.testing.assert_close(y_sorted, y_eager)
    torch.testing.assert_close(dx_sorted, dx_eager)
    torch.testing.assert_close(g_sorted["experts.gate_up_proj"], g_eager["experts.gate_up_proj"])
    torch.testing.assert_close(g_sorted["router.weight"], g_eager["router.weight"])
    # capacity: no expert computes more than ceil(0.5 * 64 * 2 / 8) = 8 pairs
    assert sorted_layer.experts.capacity(64) == 8


@pytest.mark.parametrize("tile_rows", [1, 5, 40, None])
def test_batched_tiles_of_any_size_match_eager_on_a_skewed_router(monkeypatch, tile_rows):
    from openparity.moe import tiles

    if tile_rows is not None:  # tiles of ~tile_rows padded rows: several, the last one short
        monkeypatch.setattr(tiles, "TILE_ELEMENTS", tile_rows * H)
    torch.manual_seed(4)
    config = MoEConfig(
        hidden=H, expert_dim=INNER, n_routed=7, top_k=K, n_shared=1, dispatch="batched"
    )
    batched, eager = same_weights(config, dispatch="eager")
    with torch.no_grad():
        for layer in (batched, eager):
            layer.router.weight[3] += 2.0  # expert 3 takes most tokens, expert 5 maybe none
    x = torch.randn(2, 24, H)
    y_batched, dx_batched, g_batched = grads(batched, x)
    y_eager, dx_eager, g_eager = grads(eager, x)
    torch.testing.assert_close(y_batched, y_eager)
    torch.testing.assert_close(dx_batched, dx_eager)
    for name, grad in g_eager.items():
        torch.testing.assert_close(g_batched[name], grad, msg=name)
    # inference takes its own path (tile by tile, reused buffers): big, small, big again
    with torch.no_grad():
        for tokens in (x, x[:1, :5], x.flip(1)):
            torch.testing.assert_close(batched(tokens), eager(tokens))


def test_balance_losses_on_constructed_routings():
    # 4 tokens, 4 experts, k = 1: tokens go to experts 0, 0, 1, 2
    indices = torch.tensor([[0], [0], [1], [2]])
    affinities = torch.tensor(
        [[0.7, 0.1, 0.1, 0.1], [0.6, 0.2, 0.1, 0.1], [0.1, 0.8, 0.05, 0.05], [0.1, 0.1, 0.7, 0.1]]
    )
    # f = N'/(K'T) * counts = 4/4 * [2, 1, 1, 0]; P = column means
    f = torch.tensor([2.0, 1.0, 1.0, 0.0])
    p = affinities.mean(0)
    expected = 0.01 * float((f * p).sum())
    assert float(balance.expert_balance_loss(indices, affinities, 0.01)) == pytest.approx(expected)
    # devices {0,1} and {2,3}: f' = [1.5, 0.5], P' = [p0 + p1, p2 + p3]
    device = 0.1 * (1.5 * float(p[0] + p[1]) + 0.5 * float(p[2] + p[3]))
    assert float(balance.device_balance_loss(indices, affinities, 0.1, 2)) == pytest.approx(device)
    # two sequences of 2 tokens: the loss of each, averaged
    first = (torch.tensor([4.0, 0, 0, 0]) * affinities[:2].mean(0)).sum()
    second = (torch.tensor([0, 2.0, 2.0, 0]) * affinities[2:].mean(0)).sum()
    sequence = 0.5 * float(first + second) / 2
    assert float(balance.sequence_balance_loss(indices, affinities, 0.5, 2)) == pytest.approx(
        sequence
    )
    load = balance.expert_load(indices, 4)
    assert balance.max_violation(load) == pytest.approx(1.0)  # max 2 against a mean of 1
    bias = torch.zeros(4)
    balance.update_bias(bias, load, 0.01)
    assert bias.tolist() == pytest.approx([-0.01, 0.0, 0.0, 0.01])


def test_aux_loss_free_balancing_evens_out_a_skewed_router():
    torch.manual_seed(3)
    config = MoEConfig(
        hidden=H, expert_dim=INNER, n_routed=E, top_k=K, router="sigmoid", bias_update_speed=0.01
    )
    layer = MoELayer(config)
    with torch.no_grad():
        layer.router.weight[0] += 1.0  # expert 0 wins far too often
    x = torch.randn(512, H) + 0.5
    layer(x)
    before = layer.max_violation()
    for _ in range(200):
        layer.update_bias()
        with torch.no_grad():
            layer(x)
    assert layer.max_violation() < before / 2
    weights_only = layer.router(x).weights  # the bias chooses experts, never weights them
    assert (weights_only > 0).all()


def test_only_training_forwards_count_towards_balancing():
    """Validation batches between training steps must not steer the selection bias."""
    torch.manual_seed(0)
    config = MoEConfig(
        hidden=H,
        expert_dim=INNER,
        n_routed=E,
        top_k=K,
        router="sigmoid",
        bias_update_speed=0.01,
        seq_aux_alpha=0.1,
    )
    layer = MoELayer(config).train()
    layer(torch.randn(2, 8, H))
    trained = layer.load.clone()
    assert trained.sum() == 2 * 8 * K and layer.aux_loss.item() > 0
    layer.eval()
    with torch.no_grad():
        layer(torch.randn(4, 8, H) + 3.0)  # a validation batch routed very differently
    torch.testing.assert_close(layer.load, trained)
    assert float(layer.aux_loss) == 0.0
    layer.update_bias()
    expected = torch.zeros(E)
    balance.update_bias(expected, trained, 0.01)
    torch.testing.assert_close(layer.router.bias, expected)
