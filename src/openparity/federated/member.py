"""One member's side of a round: read its private data, train the global adapter on it with
TRL (FedProx adds its proximal term), measure its validation loss. Nothing here sends data
anywhere; the ClientApp returns only the adapter tensors and counts.

A member's data is an `openparity data` output: a folder (its published `data/train.jsonl`,
else `kept.jsonl`) or a JSONL file. Records are screened against the benchmarks the alliance
evaluates on before any training (`align.examples`), and split into training and validation
by a hash of each record's id, so the split never depends on the order of the file.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openparity.align.examples import Examples, sft_examples
from openparity.federated.adapter import adapter_state, load_adapter_state, lora_model
from openparity.federated.errors import FederatedError
from openparity.federated.settings import FederationSettings


@dataclass
class MemberData:
    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    digest: str  # of the training rows: the member's identity for seeding, same in every runtime
    dropped: dict[str, int]


def data_file(location: str) -> Path:
    """The JSONL file of a member's data location."""
    path = Path(location).expanduser()
    if path.is_dir():
        for candidate in (path / "data" / "train.jsonl", path / "kept.jsonl"):
            if candidate.is_file():
                return candidate
        raise FederatedError(
            f"{path} holds neither data/train.jsonl nor kept.jsonl",
            hint="give an `openparity data` output folder or a JSONL file",
        )
    if not path.is_file():
        raise FederatedError(f"member data {path} does not exist", hint="check the data path")
    return path


def read_member_data(location: str, settings: FederationSettings) -> MemberData:
    """The member's examples, screened and split (training, validation)."""
    examples: Examples = sft_examples(data_file(location), _screen(settings.benchmarks))
    train, validation = [], []
    for row, record_id in zip(examples.rows, examples.ids, strict=True):
        bucket = int(hashlib.sha256(record_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (validation if bucket < settings.validation_share else train).append(row)
    if not train:
        raise FederatedError(f"{location}: every record went to validation; add records")
    digest = hashlib.sha256(repr(train).encode()).hexdigest()
    return MemberData(train, validation, digest, dict(examples.dropped))


@functools.lru_cache(maxsize=4)
def _screen(benchmarks: tuple[str, ...]) -> Any:
    """The decontamination index of `benchmarks` (built once per process)."""
    from openparity.data.decontam import BenchmarkIndex

    return BenchmarkIndex.from_benchmarks(benchmarks) if benchmarks else None


def train_round(
    settings: FederationSettings,
    state: dict[str, Any],
    data: MemberData,
    server_round: int,
    proximal_mu: float = 0.0,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Train the global adapter `state` for `local_steps` on the member's data; the new
    adapter and the round's metrics (train loss, tokens, examples)."""
    model, tokenizer = lora_model(settings)
    load_adapter_state(model, state)
    seed = _round_seed(settings, data, server_round)
    trainer = _trainer(settings, model, tokenizer, data.train, seed, state, proximal_mu)
    model.train()
    outcome = trainer.train()
    model.eval()
    metrics = {
        "train-loss": float(outcome.training_loss),
        "num-examples": float(len(data.train)),
        "tokens": float(trainer.state.num_input_tokens_seen),
    }
    return adapter_state(model), metrics


def validation_loss(settings: FederationSettings, state: dict[str, Any], data: MemberData) -> float:
    """Mean completion-token loss of the adapter on the member's held-out records."""
    if not data.validation:
        raise FederatedError("this member holds no validation records", hint="raise the share")
    model, tokenizer = lora_model(settings)
    load_adapter_state(model, state)
    # the trainer only evaluates: its training rows are the validation rows, so the member's
    # whole training set is not tokenized again every round
    trainer = _trainer(
        settings,
        model,
        tokenizer,
        data.validation,
        settings.seed,
        None,
        0.0,
        evaluation=data.validation,
    )
    return float(trainer.evaluate()["eval_loss"])


def _round_seed(settings: FederationSettings, data: MemberData, server_round: int) -> int:
    mixed = f"{settings.seed}:{server_round}:{data.digest}".encode()
    return int(hashlib.sha256(mixed).hexdigest()[:8], 16)


def _trainer(
    settings: FederationSettings,
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    seed: int,
    anchor: dict[str, Any] | None,
    proximal_mu: float,
    evaluation: list[dict[str, Any]] | None = None,
) -> Any:
    import datasets
    import torch
    import trl

    from openparity.align.trainers import log_callback, report_logs_to

    config = trl.SFTConfig(
        output_dir=_scratch(),  # nothing is saved there (save_strategy "no")
        max_steps=settings.local_steps,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="constant",
        seed=seed,
        data_seed=seed,
        max_length=settings.max_length,
        packing=False,
        save_strategy="no",
        logging_steps=1,
        report_to=[],
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        fp16=False,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="all",
    )
    trainer_cls = trl.SFTTrainer if not proximal_mu else _proximal(trl.SFTTrainer)
    trainer = trainer_cls(
        model=model,
        args=config,
        train_dataset=datasets.Dataset.from_list(rows),
        eval_dataset=datasets.Dataset.from_list(evaluation) if evaluation else None,
        processing_class=tokenizer,
    )
    if proximal_mu:
        trainer.anchor = _anchor(model, anchor or {}, proximal_mu)
    report_logs_to(trainer, log_callback([], settings.local_steps, None))  # off stdout
    return trainer


@functools.lru_cache(maxsize=1)
def _scratch() -> str:
    """The trainer's output folder: one per process, removed when the process exits."""
    folder = tempfile.mkdtemp(prefix=f"openparity-member-{os.getpid()}-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _anchor(model: Any, state: dict[str, Any], mu: float) -> tuple[float, list[tuple[Any, Any]]]:
    """(mu, [(trainable parameter, its global value)]) for FedProx's proximal term."""
    pairs = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        key = name.replace(".default", "")  # PEFT's state names leave out the adapter's name
        if key not in state:
            raise FederatedError(f"the global adapter has no tensor for {name}")
        pairs.append((parameter, state[key].to(parameter.device, parameter.dtype)))
    return mu, pairs


def _proximal(base: type) -> type:
    """`base` with FedProx's term (mu / 2) * ||w - w_global||^2 added to the loss."""

    class ProximalTrainer(base):  # type: ignore[misc, valid-type]
        anchor: tuple[float, list[tuple[Any, Any]]] = (0.0, [])

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss = result[0] if return_outputs else result
            mu, pairs = self.anchor
            penalty = sum((p - g).pow(2).sum() for p, g in pairs)
            loss = loss + mu / 2 * penalty
            return (loss, *result[1:]) if return_outputs else loss

    return ProximalTrainer
