"""The small LM: training with checkpoint / resume, the comparison, and the Hugging Face export
(transformers loads it, gives the same logits and generates the same tokens)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from openparity.moe.export import ExportError, export_hf, hf_format  # noqa: E402
from openparity.moe.lm import CausalLM, model_size, preset  # noqa: E402
from openparity.moe.train import TrainError, TrainSettings, load_model, train  # noqa: E402
from tests.cli import openparity  # noqa: E402

TINY = TrainSettings(steps=12, batch=4, seq_len=32, eval_every=6, save_every=6, eval_batches=2)


def test_presets_hold_their_parameter_promises():
    dense, active, total = (
        model_size(CausalLM(preset(n, dim=64, n_layers=2)))
        for n in ("dense", "moe-active", "moe-total")
    )
    assert active.active_params == pytest.approx(dense.active_params, rel=0.02)
    assert active.total_params > 2.5 * dense.total_params
    assert total.total_params == pytest.approx(dense.total_params, rel=0.05)
    assert total.flops_per_token < 0.6 * dense.flops_per_token


def test_training_resumes_exactly_where_it_stopped(tmp_path):
    config = preset("moe-active", dim=32, n_layers=1)
    whole = train(config, "bench:gsm8k", tmp_path / "whole", TINY)

    def interrupt(step, total, last):
        if step == 5:
            raise KeyboardInterrupt  # Ctrl-C: the checkpoint is saved on the way out

    with pytest.raises(TrainError, match="interrupted at step 5"):
        train(config, "bench:gsm8k", tmp_path / "split", TINY, progress=interrupt)
    with pytest.raises(TrainError, match="--resume"):
        train(config, "bench:gsm8k", tmp_path / "split", TINY)
    saved = json.loads((tmp_path / "split" / "settings.json").read_text(encoding="utf-8"))
    assert saved["settings"]["batch"] == TINY.batch and saved["corpus"] == "bench:gsm8k"
    other = replace(TINY, lr=1e-2, batch=8)
    with pytest.raises(TrainError, match=r"lr 0.003 \(now 0.01\)") as refused:
        train(config, "bench:gsm8k", tmp_path / "split", other, resume=True)
    assert "batch 4 (now 8)" in str(refused.value)
    with pytest.raises(TrainError, match="corpus bench:gsm8k \\(now bench:mmlu\\)"):
        train(config, "bench:mmlu", tmp_path / "split", TINY, resume=True)
    resumed = train(config, "bench:gsm8k", tmp_path / "split", TINY, resume=True)
    assert resumed.step == whole.step == 12
    assert resumed.val_loss == pytest.approx(whole.val_loss, rel=1e-5)
    first = load_model(tmp_path / "whole").state_dict()
    second = load_model(tmp_path / "split").state_dict()
    for name, tensor in first.items():
        torch.testing.assert_close(second[name], tensor, rtol=1e-5, atol=1e-6)
    assert (tmp_path / "whole" / "log.csv").read_text().startswith("step,")
    assert whole.log[-1]["val_loss"] < 5.5  # below uniform bytes (ln 256 = 5.55)


def test_training_refuses_a_bad_corpus(tmp_path):
    (tmp_path / "tiny.txt").write_text("too short", encoding="utf-8")
    with pytest.raises(TrainError, match="10,000"):
        train(preset("dense", dim=32, n_layers=1), str(tmp_path / "tiny.txt"), tmp_path / "x", TINY)


@pytest.mark.parametrize(
    "name, kind", [("dense", "llama"), ("mixtral", "mixtral"), ("moe-active", "glm4_moe")]
)
def test_export_loads_in_transformers_with_the_same_logits(tmp_path, name, kind):
    torch.manual_seed(0)
    model = CausalLM(preset(name, dim=64, n_layers=2)).eval()
    if kind == "glm4_moe":
        with torch.no_grad():
            for layer in model.moe_layers:
                layer.router.bias.normal_(std=0.01)  # a trained selection bias travels too
    assert hf_format(model) == kind
    export_hf(model, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, 256, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), rtol=1e-4, atol=1e-5)
    generated = hf.generate(ids[:1, :6], max_new_tokens=6, do_sample=False)
    assert generated.tolist() == model.generate(ids[:1, :6], 6).tolist()


def test_mixtral_export_refuses_a_selection_bias(tmp_path):
    model = CausalLM(preset("mixtral", dim=32, n_layers=1))
    with torch.no_grad():
        model.moe_layers[0].router.bias[0] = 0.5
    with pytest.raises(ExportError, match="selection bias"):
        export_hf(model, tmp_path / "hf")


@pytest.mark.slow
def test_cli_compare_and_export(tmp_path):
    compared = openparity(
        "moe",
        "compare",
        "--preset",
        "dense",
        "--preset",
        "moe-active",
        "--steps",
        "4",
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
    assert [r["preset"] for r in rows] == ["dense", "moe-active"]
    assert rows[1]["total_params"] > rows[0]["total_params"]
    assert all(r["infer_tokens_per_s"] > 0 and r["val_loss"] > 0 for r in rows)
    exported = openparity(
        "moe", "export", str(tmp_path / "runs" / "moe-active"), "--out", str(tmp_path / "hf")
    )
    assert exported.returncode == 0, exported.stderr
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "glm4_moe"
    missing = openparity("moe", "export", str(tmp_path / "nothing"), "--out", str(tmp_path / "x"))
    assert missing.returncode == 2 and "no checkpoint" in missing.stderr
