"""Sparse training on a Hugging Face model: the embedded SmolLM2-135M (its GGUF, dequantised by
transformers), a few RigL steps, then the mask-applied export loads with the same logits."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")

from openparity.models.embedded import EMBEDDED_MODELS  # noqa: E402
from openparity.models.gguf_weights import load_gguf_model  # noqa: E402
from openparity.sparse import DynamicSparsity, SparseConfig, with_masks_applied  # noqa: E402


@pytest.mark.slow
def test_rigl_on_smollm2_exports_to_transformers_with_the_same_logits(tmp_path):
    gguf = EMBEDDED_MODELS["smollm2-135m"].path()
    model, tokenizer = load_gguf_model(gguf)
    config = SparseConfig(
        method="rigl",
        sparsity=0.5,
        distribution="uniform",
        delta_t=1,
        include=("model.layers.*.mlp.*",),
    )
    sparsity = DynamicSparsity(model, config, total_steps=4)
    assert len(sparsity.weights) == 3 * model.config.num_hidden_layers
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    sparsity.attach(optimizer)
    batch = tokenizer(["The capital of France is Paris. 北京是中国的首都。"], return_tensors="pt")
    for _ in range(2):
        loss = model(**batch, labels=batch["input_ids"]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert [r.step for r in sparsity.history][:: len(sparsity.weights)] == [1, 2]
    assert sparsity.overall_sparsity() == pytest.approx(0.5, abs=1e-6)

    plain = with_masks_applied(model)
    plain.save_pretrained(tmp_path / "sparse-smollm2")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "sparse-smollm2")
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(**batch).logits, model(**batch).logits, rtol=1e-4, atol=1e-4
        )
    up = reloaded.model.layers[3].mlp.up_proj.weight
    mask = next(w.mask for w in sparsity.weights if w.name == "model.layers.3.mlp.up_proj.weight")
    assert float(mask.float().mean()) == 0.5 and (up[~mask] == 0).all()
    # weights grown at the last update start at zero, so zeros may exceed the masked half
    assert float((up[mask] == 0).float().mean()) < 0.1
