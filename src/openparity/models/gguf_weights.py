"""A GGUF file as a trainable Hugging Face model: transformers dequantises the weights to the
dtype asked for; the result keeps a "gguf" quantizer marker that makes `save_pretrained`
refuse, although nothing is quantized any more. `load_gguf_model` drops the marker, so a
model trained from the embedded SmolLM2 saves as an ordinary checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openparity.models.errors import MissingDependencyError


def load_gguf_model(path: Path, dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) from a GGUF file, dequantised (float32 unless `dtype` says)."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(
            f"loading GGUF weights for training needs {exc.name}",
            hint='pip install "openparity[train]"',
        ) from None
    for needed in ("gguf", "accelerate"):
        try:
            __import__(needed)
        except ImportError:
            raise MissingDependencyError(
                f"transformers needs the {needed} package to load a GGUF file",
                hint='pip install "openparity[train]"',
            ) from None
    kwargs = {"gguf_file": path.name}
    model = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, dtype=dtype or torch.float32, **kwargs
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, **kwargs)
    model.hf_quantizer = None  # dequantised already: plain weights from here on
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer
