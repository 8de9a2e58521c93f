"""A GGUF file as a trainable Hugging Face model: transformers dequantises the weights to the
dtype asked for; the result keeps a "gguf" quantizer marker that makes `save_pretrained`
refuse, although nothing is quantized any more. `load_gguf_model` drops the marker, so a
model trained from the embedded SmolLM2 saves as an ordinary checkpoint.

Dequantising (and building the tokenizer from the GGUF vocabulary) takes tens of seconds on
2 cores, in every process that needs the model (each federated ClientApp message, each
training run). The first load therefore keeps a float32 copy in the user's cache folder,
keyed by the file's size and modification time; later loads read that copy."""

from __future__ import annotations

import hashlib
import shutil
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
    dtype = dtype or torch.float32
    cached = dequantised_copy(path)
    if (cached / "config.json").is_file():
        model = transformers.AutoModelForCausalLM.from_pretrained(cached, dtype=dtype)
        return model, transformers.AutoTokenizer.from_pretrained(cached)
    kwargs = {"gguf_file": path.name}
    model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, dtype=dtype, **kwargs)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, **kwargs)
    model.hf_quantizer = None  # dequantised already: plain weights from here on
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if dtype == torch.float32:
        _keep(model, tokenizer, cached)
    return model, tokenizer


def dequantised_copy(path: Path) -> Path:
    """Where the float32 copy of the GGUF file `path` is (or would be) cached."""
    from openparity.cachedir import user_cache_dir

    stat = path.resolve().stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return user_cache_dir() / "gguf-dequantised" / hashlib.sha256(key.encode()).hexdigest()[:20]


def _keep(model: Any, tokenizer: Any, directory: Path) -> None:
    """Save the copy beside its place and rename it; a failure (a full disk) only costs the
    next load its speed."""
    partial = directory.with_name(directory.name + f".partial-{id(model)}")
    try:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        partial.rename(directory)
    except OSError:
        pass  # another process kept it first, or no room: the GGUF stays the source
    finally:
        shutil.rmtree(partial, ignore_errors=True)
