"""The shared base model with LoRA adapters: the only weights that travel between members.

Every process (the coordinator and each member) opens the base once and keeps it; a round
only loads the global adapter into it. The adapter travels as a Flower `ArrayRecord` of the
LoRA tensors in a fixed order, and is saved as a PEFT directory that `hf:DIR` opens (merged
into the base it names).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openparity.atomic import write_atomic
from openparity.federated.errors import FederatedError
from openparity.federated.settings import FederationSettings
from openparity.models.errors import MissingDependencyError

_MODELS: dict[tuple[str, int, int, int], tuple[Any, Any]] = {}
_INITIAL: dict[tuple[str, int, int, int], dict[str, Any]] = {}


def libraries() -> tuple[Any, Any]:
    """(torch, peft), or one clear line on what to install."""
    try:
        import peft
        import torch
    except ImportError as exc:
        raise MissingDependencyError(
            f"openparity federated needs {exc.name}", hint='pip install "openparity[federated]"'
        ) from None
    return torch, peft


def lora_model(settings: FederationSettings) -> tuple[Any, Any]:
    """(PeftModel, tokenizer) of the base with fresh LoRA adapters drawn from the seed; one per
    process and configuration (a round overwrites the adapter weights, never the base)."""
    torch, peft = libraries()
    key = _key(settings)
    if key not in _MODELS:
        from openparity.models.hf_backend import load_hf_model

        model, tokenizer = load_hf_model(settings.base)
        torch.manual_seed(settings.seed)
        config = peft.LoraConfig(
            r=settings.lora_r,
            lora_alpha=settings.lora_alpha,
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
        tokenizer.padding_side = "right"
        _MODELS[key] = (peft.get_peft_model(model, config), tokenizer)
        _INITIAL[key] = adapter_state(_MODELS[key][0])
    return _MODELS[key]


def _key(settings: FederationSettings) -> tuple[str, int, int, int]:
    return (settings.base, settings.lora_r, settings.lora_alpha, settings.seed)


def adapter_state(model: Any) -> dict[str, Any]:
    """The LoRA tensors by name, in the model's order (detached copies on the CPU)."""
    _, peft = libraries()
    state = peft.get_peft_model_state_dict(model)
    return {name: tensor.detach().cpu().clone() for name, tensor in state.items()}


def load_adapter_state(model: Any, state: dict[str, Any]) -> None:
    """Put `state` (names as adapter_state gives them) into the model's LoRA tensors."""
    _, peft = libraries()
    expected = set(peft.get_peft_model_state_dict(model))
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise FederatedError(
            f"the adapter does not fit this base: {len(missing)} tensors missing"
            f" ({missing[:2]}), {len(extra)} unexpected ({extra[:2]})",
            hint="every member and the coordinator need the same --base, --lora-r and --lora-alpha",
        )
    peft.set_peft_model_state_dict(model, state)


def initial_state(settings: FederationSettings) -> dict[str, Any]:
    """The round-0 adapter: LoRA A drawn from the seed, B zero (the base model unchanged);
    the same whatever this process trained since."""
    lora_model(settings)
    return {name: tensor.clone() for name, tensor in _INITIAL[_key(settings)].items()}


def save_adapter(settings: FederationSettings, state: dict[str, Any], directory: Path) -> None:
    """A PEFT adapter directory naming `settings.base`, written beside its place and renamed."""
    import shutil

    model, _ = lora_model(settings)
    load_adapter_state(model, state)
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(str(partial))
    config_path = partial / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = settings.base
    write_atomic(config_path, json.dumps(config, indent=2))
    if directory.exists():
        shutil.rmtree(directory)
    partial.rename(directory)
