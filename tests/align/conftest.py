"""A tiny randomly initialised Llama with SmolLM2's real tokenizer: the mechanics of training
(losses, resume, processes) are tested on it in seconds; the real model is tested for effect."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("trl")


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    import transformers

    from openparity.models.embedded import EMBEDDED_MODELS

    gguf = EMBEDDED_MODELS["smollm2-135m"].path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    import json

    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def chat_rows(n: int) -> list[dict]:
    """Short chat records, some in Chinese (the pipeline must carry any script)."""
    rows = []
    for i in range(n):
        question = f"What is {i} plus {i}?" if i % 2 else f"{i} 加 {i} 等于多少？"
        rows.append({"messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": f"{i} + {i} = {2 * i}. #### {2 * i}"},
        ]})  # fmt: skip
    return rows
