"""Sparse training wired into the small LM trainer and the CLI: resume, export to transformers
with the same logits, `moe train --sparsity`, `sparse compare`."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from openparity.moe.export import export_hf  # noqa: E402
from openparity.moe.lm import model_size, preset  # noqa: E402
from openparity.moe.train import TrainError, TrainSettings, load_model, train  # noqa: E402
from openparity.sparse import SparseConfig, is_masked  # noqa: E402
from tests.cli import openparity  # noqa: E402

TINY = TrainSettings(steps=12, batch=4, seq_len=32, eval_every=6, save_every=6, eval_batches=2)


@pytest.mark.parametrize("name", ["dense", "moe-active"])
def test_sparse_lm_resumes_exactly_and_exports_with_the_same_logits(tmp_path, name):
    config = preset(name, dim=32, n_layers=2)
    settings = replace(TINY, sparse=SparseConfig(method="rigl", sparsity=0.8, delta_t=2))
    whole = train(config, "bench:gsm8k", tmp_path / "whole", settings)

    def interrupt(step, total, last):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(TrainError, match="interrupted"):
        train(config, "bench:gsm8k", tmp_path / "split", settings, progress=interrupt)
    with pytest.raises(TrainError, match="other sparse settings"):
        train(config, "bench:gsm8k", tmp_path / "split", TINY, resume=True)
    resumed = train(config, "bench:gsm8k", tmp_path / "split", settings, resume=True)
    assert resumed.val_loss == pytest.approx(whole.val_loss, rel=1e-5)
    assert whole.sparsity == pytest.approx(0.8, abs=1e-3)

    model = load_model(tmp_path / "whole")
    tokens = TINY.steps * TINY.batch * TINY.seq_len
    dense_flops = 3 * model_size(model, TINY.seq_len).flops_per_token * tokens
    assert 0.1 * dense_flops < whole.training_flops < 0.6 * dense_flops
    assert not is_masked(model)
    other = load_model(tmp_path / "split")
    for key, tensor in model.state_dict().items():
        torch.testing.assert_close(other.state_dict()[key], tensor, rtol=1e-5, atol=1e-6)
    zero_share = float((model.layers[0].self_attn.q_proj.weight == 0).float().mean())
    assert zero_share > 0.5
    export_hf(model, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), rtol=1e-4, atol=1e-5)
    hf_q = hf.model.layers[0].self_attn.q_proj.weight
    assert float((hf_q == 0).float().mean()) == pytest.approx(zero_share)


@pytest.mark.slow
def test_cli_moe_train_sparse_and_sparse_compare(tmp_path):
    trained = openparity(
        "moe",
        "train",
        "--preset",
        "dense",
        "--steps",
        "6",
        "--dim",
        "32",
        "--layers",
        "1",
        "--batch",
        "4",
        "--seq-len",
        "32",
        "--sparsity",
        "0.9",
        "--sparse-method",
        "set",
        "--out",
        str(tmp_path / "one"),
    )
    assert trained.returncode == 0, trained.stderr
    assert "90.0% of masked weights 0" in " ".join(trained.stdout.split())
    bad = openparity(
        "moe",
        "train",
        "--sparsity",
        "0.9",
        "--sparse-method",
        "lottery",
        "--steps",
        "2",
        "--out",
        str(tmp_path / "bad"),
    )
    assert bad.returncode == 2 and "unknown sparse method 'lottery'" in bad.stderr
    assert "Traceback" not in bad.stderr

    compared = openparity(
        "sparse",
        "compare",
        "--method",
        "static",
        "--method",
        "rigl",
        "--sparsity",
        "0.8",
        "--steps",
        "6",
        "--dim",
        "32",
        "--layers",
        "1",
        "--batch",
        "4",
        "--seq-len",
        "32",
        "--out",
        str(tmp_path / "runs"),
        "--json",
    )
    assert compared.returncode == 0, compared.stderr
    rows = json.loads(compared.stdout)
    assert [r["name"] for r in rows] == ["dense", "static@0.8", "rigl@0.8"]
    dense, static, rigl = rows
    assert static["nonzero_params"] < 0.6 * dense["nonzero_params"]
    assert static["training_flops"] < rigl["training_flops"] < dense["training_flops"]
    assert all(r["val_loss"] > 0 and r["wall_s"] > 0 for r in rows)
