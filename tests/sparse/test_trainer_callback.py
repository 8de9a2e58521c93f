"""Sparse training inside a real Hugging Face Trainer (the base of TRL's trainers): the
schedule follows the Trainer's steps, gradient accumulation included, and a resumed Trainer
continues the schedule."""

from __future__ import annotations

from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from openparity.sparse import DynamicSparsity, SparseConfig, SparsityCallback  # noqa: E402


def tiny_llama():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    return transformers.LlamaForCausalLM(config)


def dataset(n: int = 64):
    generator = torch.Generator().manual_seed(1)
    rows = []
    for _ in range(n):
        ids = torch.randint(0, 64, (16,), generator=generator)
        rows.append({"input_ids": ids, "labels": ids.clone()})
    return rows


def trainer(model, sparsity, out, max_steps):
    args = transformers.TrainingArguments(
        output_dir=str(out),
        max_steps=max_steps,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        learning_rate=1e-3,
        weight_decay=0.1,
        report_to=[],
        use_cpu=True,
        save_strategy="steps",
        save_steps=6,
        logging_steps=100,
        seed=0,
        disable_tqdm=True,
    )
    return transformers.Trainer(
        model=model, args=args, train_dataset=dataset(), callbacks=[SparsityCallback(sparsity)]
    )


def test_rigl_runs_on_the_trainer_schedule_and_resumes(tmp_path):
    model = tiny_llama()
    config = SparseConfig(method="rigl", sparsity=0.8, delta_t=2, include=("model.layers.*",))
    sparsity = DynamicSparsity(model, config, total_steps=0)
    wanted = [w.active() for w in sparsity.weights]
    trainer(model, sparsity, tmp_path / "run", 12).train()
    assert sorted({r.step for r in sparsity.history}) == [2, 4, 6, 8]  # below 0.75 x 12
    assert [w.active() for w in sparsity.weights] == wanted
    for weight in sparsity.weights:
        assert (weight.original.detach()[~weight.mask] == 0).all()
    assert sum(r.grown for r in sparsity.history) > 0

    # a new process resumes the Trainer from its step-6 checkpoint: masks come back with the
    # model's weights (its own initial masks, from another seed, are replaced) and the
    # schedule continues at step 6, not at 0
    again = tiny_llama()
    resumed = DynamicSparsity(again, replace(config, seed=1), total_steps=0)
    assert not torch.equal(resumed.weights[0].mask, sparsity.weights[0].mask)
    trainer(again, resumed, tmp_path / "run", 12).train(
        resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-6")
    )
    assert sorted({r.step for r in resumed.history}) == [8]
    assert resumed.step_count == 12
    for a, b in zip(sparsity.weights, resumed.weights, strict=True):
        assert torch.equal(a.mask, b.mask)
