"""Dynamic sparse training inside a Hugging Face `Trainer`, hence inside TRL's SFT / DPO / GRPO
trainers, which are Trainers:

    sparsity = DynamicSparsity(model, SparseConfig(method="rigl", sparsity=0.9), total_steps=0)
    trainer = SFTTrainer(model=model, ..., callbacks=[SparsityCallback(sparsity)])
    trainer.train()

Mask the model before the Trainer wraps it. The callback takes the schedule's length and the
current step from the Trainer (so a resumed run continues the schedule; masks travel in the
model's checkpoint), resets the optimiser state of changed weights, and updates the masks after
each optimiser step. Gradient accumulation is fine: RigL's dense gradient sums the micro-batches.
"""

from __future__ import annotations

from transformers import TrainerCallback

from openparity.sparse.sparsifier import DynamicSparsity


class SparsityCallback(TrainerCallback):
    def __init__(self, sparsity: DynamicSparsity) -> None:
        self.sparsity = sparsity

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        if optimizer is not None:  # accelerate wraps the optimiser: reset the inner one's state
            self.sparsity.track(getattr(optimizer, "optimizer", optimizer))
        self.sparsity.set_progress(state.global_step, state.max_steps)

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.sparsity.step()
