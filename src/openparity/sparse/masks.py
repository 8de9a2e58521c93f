"""Binary masks on weights as `torch.nn.utils.parametrize` parametrizations.

A masked model stays an ordinary `nn.Module`: `module.weight` reads `original * mask`, the
gradient reaching `original` is masked, and `state_dict()` holds both (`...parametrizations.
weight.original` and `...parametrizations.weight.0.mask`). On the steps where a dense
gradient is wanted (RigL's grow criterion), `Mask.capture` makes the parametrization keep the
gradient of the masked weight itself, i.e. dL/dW for every position, active or not.

Which parameters are masked is chosen by name: by default every weight matrix of a linear or
convolution layer and every stacked expert tensor (`gate_up_proj`, `down_proj`), never
embeddings, norms or biases; `include` / `exclude` take fnmatch patterns on parameter names.
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

EXPERT_STACKS = ("gate_up_proj", "down_proj")  # (E, out, in) tensors of our and HF MoE experts
NEVER_MASKED = (nn.Embedding, nn.EmbeddingBag, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


class Mask(nn.Module):
    """W -> W * mask; optionally keeps the dense gradient dL/d(W * mask) of the next backward.

    The mask is stored as 0/1 in the weight's dtype: multiplying by a bool mask converts it on
    every forward and costs about four times as much."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.capture = False
        self.dense_grad: torch.Tensor | None = None

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        masked = weight * self.mask
        if self.capture and masked.requires_grad:
            masked.register_hook(self._keep_grad)
        return masked

    def _keep_grad(self, grad: torch.Tensor) -> None:
        # a weight read twice in one step (or over accumulation micro-batches) sums its grads
        self.dense_grad = (
            grad.detach().clone() if self.dense_grad is None else self.dense_grad + grad
        )


@dataclass
class MaskedWeight:
    """One masked parameter: where it lives and its mask."""

    name: str  # parameter name in the model, as before masking ("layers.0.mlp.up_proj.weight")
    module: nn.Module
    attribute: str  # "weight", "gate_up_proj"...
    matrix_shape: tuple[int, ...]  # the shape Erdős–Rényi densities are computed from

    @property
    def parametrization(self) -> Mask:
        return self.module.parametrizations[self.attribute][0]

    @property
    def mask(self) -> torch.Tensor:
        """Which weights are active (bool, the weight's shape)."""
        return self.parametrization.mask != 0

    @property
    def original(self) -> nn.Parameter:
        return self.module.parametrizations[self.attribute].original

    @property
    def numel(self) -> int:
        return self.mask.numel()

    def active(self) -> int:
        return int(self.parametrization.mask.sum())

    def set_mask(self, mask: torch.Tensor) -> None:
        """Install a bool mask and zero the weights it leaves out."""
        with torch.no_grad():
            stored = self.parametrization.mask
            stored.copy_(mask.view(stored.shape))
            self.original.mul_(stored)


def maskable_weights(
    model: nn.Module, include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()
) -> list[tuple[str, nn.Module, str]]:
    """(parameter name, owning module, attribute) of the weights to mask, in model order.

    A parameter shared with a never-masked module (an LM head tied to the embedding) is left
    dense: masking it would mask the embedding too."""
    never = {
        id(p)
        for m in model.modules()
        if isinstance(m, NEVER_MASKED) or "norm" in type(m).__name__.lower()
        for p in m.parameters(recurse=False)
    }
    found = []
    for module_name, module in model.named_modules():
        for attribute, parameter in module.named_parameters(recurse=False):
            name = f"{module_name}.{attribute}" if module_name else attribute
            if id(parameter) in never or parameter.dim() < 2:
                continue
            default = (attribute == "weight" and _is_layer(module)) or attribute in EXPERT_STACKS
            chosen = any(fnmatch.fnmatchcase(name, p) for p in include) if include else default
            if chosen and not any(fnmatch.fnmatchcase(name, p) for p in exclude):
                found.append((name, module, attribute))
    return found


def _is_layer(module: nn.Module) -> bool:
    # transformers' Conv1D (GPT-2) stores (in, out) weights; it is a linear layer all the same
    conv1d = type(module).__name__ == "Conv1D"
    return isinstance(module, nn.Linear | nn.modules.conv._ConvNd) or conv1d


def matrix_shape(module: nn.Module, attribute: str, weight: torch.Tensor) -> tuple[int, ...]:
    """A convolution's whole kernel shape (ERK counts its spatial dims); a stack of expert
    matrices counts as one of them (each expert is a linear layer)."""
    if attribute in EXPERT_STACKS and weight.dim() == 3:
        return tuple(weight.shape[1:])
    return tuple(weight.shape)


def add_mask(model: nn.Module, name: str, module: nn.Module, attribute: str) -> MaskedWeight:
    weight = getattr(module, attribute)
    parametrize.register_parametrization(
        module, attribute, Mask(torch.ones_like(weight, requires_grad=False))
    )
    return MaskedWeight(name, module, attribute, matrix_shape(module, attribute, weight))


def is_masked(model: nn.Module) -> bool:
    return any(
        isinstance(p, Mask)
        for m in model.modules()
        if parametrize.is_parametrized(m)
        for plist in m.parametrizations.values()
        for p in plist
    )


def with_masks_applied(model: nn.Module) -> nn.Module:
    """A copy of `model` with every mask multiplied into its weight and the parametrizations
    removed: a plain module whose state_dict has the usual names (for export)."""
    plain = copy.deepcopy(model)
    for module in list(plain.modules()):
        if not parametrize.is_parametrized(module):
            continue
        # a copy shares its parametrized class with the original, and removing a
        # parametrization deletes the property from the class: give the copy its own class
        shared = type(module)
        own = {k: v for k, v in vars(shared).items() if k not in ("__dict__", "__weakref__")}
        module.__class__ = type(shared.__name__, shared.__bases__, own)
        for attribute in list(module.parametrizations.keys()):
            if any(isinstance(p, Mask) for p in module.parametrizations[attribute]):
                parametrize.remove_parametrizations(module, attribute, leave_parametrized=True)
    return plain
