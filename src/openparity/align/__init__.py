"""CLOSE (training): SFT, DPO and GRPO of a real open model on TRL + PEFT, with rewards from the
harness's scorers, checkpoints that `hf:` opens and `--gguf` exports for llama.cpp.

    from openparity.align import AlignSettings, train
    result = train(AlignSettings(method="sft", base="smollm2-135m", data=Path("kept.jsonl"),
                                 output=Path("runs/sft")), gguf="q8_0")

Needs `pip install "openparity[train]"`; the names load on first use.
"""

from __future__ import annotations

from openparity.lazy_exports import lazy_getattr

_HOMES = {
    "AlignError": "errors",
    "AlignResult": "training",
    "AlignSettings": "training",
    "export_checkpoint": "training",
    "train": "training",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_getattr(__name__, _HOMES)
