"""TRL trainers for the three methods, configured from AlignSettings (the only TRL-facing code)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from openparity.align.errors import AlignError
from openparity.align.examples import (
    Examples,
    canary_items,
    dpo_examples,
    sft_examples,
    task_prompts,
    with_canaries,
)
from openparity.align.settings import AlignSettings, Progress, deepspeed_config


@dataclass
class TrainingRun:
    trainer: Any
    tokenizer: Any
    examples: Examples
    reward: Any = None

    @property
    def reward_failures(self) -> dict[str, int]:
        return {} if self.reward is None else dict(self.reward.failures)

    @property
    def reward_summary(self) -> dict[str, Any]:
        """GRPO: the canaries' pass rate and how the scorer decided; else empty."""
        return {} if self.reward is None else self.reward.summary()

    def close(self) -> None:
        if self.reward is not None:
            self.reward.close()


def _libraries() -> tuple[Any, Any, Any]:
    from openparity.models.errors import MissingDependencyError

    try:
        import datasets
        import torch
        import trl
    except ImportError as exc:
        raise MissingDependencyError(
            f"openparity align needs {exc.name}", hint='pip install "openparity[train]"'
        ) from None
    return torch, trl, datasets


def build(settings: AlignSettings) -> TrainingRun:
    torch, trl, datasets = _libraries()
    if settings.method == "grpo":
        return _grpo(settings, trl, datasets)
    if settings.method == "sft":
        examples = sft_examples(_data(settings), _screen(settings))
        config_cls, trainer_cls = trl.SFTConfig, trl.SFTTrainer
        args: dict[str, Any] = {"max_length": settings.max_length, "packing": False}
    else:
        examples = dpo_examples(_data(settings), _screen(settings))
        config_cls, trainer_cls = trl.DPOConfig, trl.DPOTrainer
        args = {"max_length": settings.max_length, "beta": settings.beta}
    examples = _curriculum(settings, examples)
    model, tokenizer = _policy(settings, torch)
    trainer = trainer_cls(
        model=model,
        args=config_cls(**_common_args(settings, torch), **args),
        train_dataset=datasets.Dataset.from_list(examples.rows),
        processing_class=tokenizer,
        peft_config=lora_config(settings),
    )
    return TrainingRun(trainer, tokenizer, examples)


def _policy(settings: AlignSettings, torch: Any) -> tuple[Any, Any]:
    """The base model in training mode, seeded (LoRA weights are drawn after this)."""
    from openparity.models.hf_backend import load_hf_model

    torch.manual_seed(settings.seed)
    model, tokenizer = load_hf_model(settings.base)
    model.train()
    # GRPO also generates, outside autocast, where fp32 activations meet the stored weights
    if settings.lora_r and settings.method != "grpo" and uses_bf16(settings.precision, torch):
        store_frozen_linears_in_bf16(model, torch)
    tokenizer.padding_side = "right"
    return model, tokenizer


def store_frozen_linears_in_bf16(model: Any, torch: Any) -> None:
    """Under LoRA the linear layers it wraps stay frozen, and bf16 autocast rounds their
    weights to bf16 for every matmul anyway. Stored that way they take half the memory and
    autocast stops making (and keeping for backward) a bf16 copy on every pass, while each
    matmul sees the same numbers. The embeddings, the tied output head and the norms stay
    fp32, and so does the residual stream. `merged` puts the adapters onto the full-precision
    weights at the end. (SFT and DPO: every forward pass of theirs runs under autocast.)"""
    head = model.get_output_embeddings()
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            module.to(torch.bfloat16)
    # transformers maps the weights file: one weight left as a view of it keeps every page
    # that was read resident, the replaced fp32 weights included
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.dtype != torch.bfloat16:
            tensor.data = tensor.data.clone()


def merged(model: Any, settings: AlignSettings) -> Any:
    """The trained model with LoRA merged into the base weights (a model without adapters as
    it is). Where the frozen base was stored in bf16, the adapters go onto a fresh
    full-precision copy of the base: merged into bf16 weights, their small updates would be
    rounded away, and every other weight would move by the rounding. That copy takes the
    place of the trained model's weights, which are released first: `model` is spent."""
    if not hasattr(model, "merge_and_unload"):
        return model
    import torch

    if all(p.dtype == torch.float32 for p in model.get_base_model().parameters()):
        return model.merge_and_unload()
    import peft

    config = model.peft_config["default"]
    adapter = {k: v.detach().clone() for k, v in peft.get_peft_model_state_dict(model).items()}
    if not settings.deepspeed:  # ZeRO-3 re-partitions these weights when its gather ends
        for param in model.parameters():
            param.data = param.data.new_empty(0)
    with _loaded_on_this_rank_only():
        base, _ = _policy(replace(settings, lora_r=0), torch)
    fresh = peft.get_peft_model(base, config)
    peft.set_peft_model_state_dict(fresh, adapter)
    return fresh.merge_and_unload()


@contextlib.contextmanager
def _loaded_on_this_rank_only() -> Iterator[None]:
    """Only rank 0 merges. While a ZeRO-3 run is configured, transformers builds every model
    it loads under deepspeed.zero.Init, which partitions each weight with a broadcast to all
    ranks: a collective the other ranks never join (rank 1 had left, and the run died with
    "Connection closed by peer"). The fresh base is loaded as a plain model instead."""
    from transformers.integrations import deepspeed as hf_deepspeed

    reference = hf_deepspeed._hf_deepspeed_config_weak_ref
    config = reference() if reference is not None else None
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if config is not None:
            hf_deepspeed.set_hf_deepspeed_config(config)


def _grpo(settings: AlignSettings, trl: Any, datasets: Any) -> Any:
    import torch

    from openparity.align.rewards import TaskReward
    from openparity.bench.tasks import get_task

    if settings.task is None:
        raise AlignError("align grpo needs --task (whose prompts and scorer train the model)")
    if settings.batch_size % settings.generations:
        raise AlignError(
            f"--batch-size {settings.batch_size} is not a multiple of --generations"
            f" {settings.generations}",
            hint="each step scores whole groups of completions of one prompt",
        )
    task = get_task(settings.task)
    items = select_items(task.items(), settings.items)
    variant = settings.variant or task.default_settings().variant
    examples = _curriculum(settings, task_prompts(task, items, variant))
    canaries = canary_items(task, items, settings.canaries, settings.seed)
    if canaries:
        examples = with_canaries(examples, task_prompts(task, canaries, variant))
    reward = TaskReward(task, items, canaries, settings.hack_stop)
    model, tokenizer = _policy(settings, torch)
    args = {
        "num_generations": settings.generations,
        "max_completion_length": settings.max_completion,
        "temperature": settings.temperature,
        "beta": settings.beta,
    }
    if settings.curriculum:
        args["shuffle_dataset"] = False
    if settings.vllm_server:
        args.update(use_vllm=True, vllm_mode="server", vllm_server_base_url=settings.vllm_server)
    tokenizer.padding_side = "left"
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=trl.GRPOConfig(**_common_args(settings, torch), **args),
        train_dataset=datasets.Dataset.from_list(examples.rows),
        processing_class=tokenizer,
        peft_config=lora_config(settings),
    )
    return TrainingRun(trainer, tokenizer, examples, reward)


def _curriculum(settings: AlignSettings, examples: Examples) -> Examples:
    if settings.curriculum is None:
        return examples
    from openparity.align.curriculum import Curriculum

    return Curriculum(settings.curriculum, settings.store).order(examples, settings.seed)


def select_items(items: list[Any], spec: str) -> list[Any]:
    """items[START:END] from "START:END" (either side may be empty)."""
    start, sep, end = spec.partition(":")
    try:
        chosen = items[int(start) if start else None : int(end) if end else None]
    except ValueError:
        raise AlignError(f"--items {spec!r} is not START:END", hint="e.g. 200:600") from None
    if not sep or not chosen:
        raise AlignError(f"--items {spec!r} selects no items of {len(items)}")
    return chosen


def _data(settings: AlignSettings) -> Any:
    if settings.data is None:
        raise AlignError(f"align {settings.method} needs --data FILE.jsonl")
    return settings.data


def _screen(settings: AlignSettings) -> Any:
    if not settings.decontaminate:
        return None
    from openparity.data.decontam import BenchmarkIndex

    return BenchmarkIndex.from_benchmarks(settings.decontaminate)


def lora_config(settings: AlignSettings) -> Any:
    if settings.lora_r == 0:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def uses_bf16(precision: str, torch: Any) -> bool:
    """Whether a run of `precision` trains under bf16 autocast. `auto`: where the hardware
    computes bf16 natively (a GPU that has it; a CPU with AMX or AVX512-BF16). Elsewhere bf16
    is emulated, tens of times slower than fp32, so auto stays in fp32 there."""
    if precision != "auto":
        return precision == "bf16"
    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    cpu = torch.cpu
    return any(
        getattr(cpu, probe, lambda: False)()
        for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    )


def _common_args(settings: AlignSettings, torch: Any) -> dict[str, Any]:
    return {
        "output_dir": str(settings.output / "checkpoints"),
        "max_steps": settings.steps,
        # With several processes each global batch is drawn as in one process and split
        # between them, so N processes see the same examples per step as one.
        "per_device_train_batch_size": settings.batch_size,
        "accelerator_config": {"split_batches": settings.processes > 1},
        "gradient_accumulation_steps": settings.grad_accum,
        "learning_rate": settings.learning_rate,
        "lr_scheduler_type": "constant",
        "seed": settings.seed,
        "data_seed": settings.seed,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": settings.save_steps,
        "save_total_limit": 2,
        "report_to": [],
        "disable_tqdm": True,
        "use_cpu": not torch.cuda.is_available(),
        "bf16": uses_bf16(settings.precision, torch),
        "fp16": False,
        "activation_checkpointing": settings.gradient_checkpointing,
        "dataloader_num_workers": 0,
        "include_num_input_tokens_seen": "all",
        # a curriculum is an order: read the examples as given instead of shuffling them
        "train_sampling_strategy": "sequential" if settings.curriculum else "random",
        "deepspeed": str(deepspeed_config(settings.deepspeed)) if settings.deepspeed else None,
    }


def report_logs_to(trainer: Any, callback: Any) -> None:
    """Logs go to `callback` only: the Trainer's printer would write them to stdout (--json)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(callback)


def log_callback(kept: list[dict[str, float]], total: int, progress: Progress | None) -> Any:
    """A TrainerCallback that keeps the Trainer's logs and reports each one."""
    from transformers import TrainerCallback

    class LogCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            entry = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float)}
            entry["step"] = state.global_step
            kept.append(entry)
            if progress is not None:
                progress(state.global_step, total, entry)

    return LogCallback()
