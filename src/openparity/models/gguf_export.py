"""Write a trained Hugging Face checkpoint (Llama family or Gemma 3) as a GGUF file llama.cpp
runs.

The tokenizer, chat template and hyper-parameters come from a template GGUF of the same model
(the file the checkpoint was trained from, e.g. the embedded SmolLM2): only the weights are new.
Tensors are named with the `gguf` package's own name map, and each architecture's layout
differences are undone (transformers applies them when it loads a GGUF): Llama's query / key
rows go back to llama.cpp's rotary layout, Gemma's norm weights get their +1 back. Norms stay
float32; matrices are float32 or float16. The file is written beside its target and renamed, so
a crash never leaves a half-written model.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from openparity.atomic import mode_for
from openparity.errors import OpenparityError
from openparity.models.errors import MissingDependencyError

GgufDtype = Literal["f32", "f16", "q8_0"]
GGUF_DTYPES: tuple[str, ...] = ("f32", "f16", "q8_0")  # q8_0: llama.cpp's 8-bit blocks of 32

# Keys the writer sets itself, or that describe the template's quantisation, not ours.
_SKIPPED_KEYS = (
    "GGUF.",
    "general.architecture",
    "general.file_type",
    "general.quantization_version",
)


class GgufExportError(OpenparityError):
    """The checkpoint does not fit the template GGUF."""


@dataclass(frozen=True)
class _Layout:
    """How transformers holds an architecture's tensors differently from llama.cpp."""

    model_arch: str  # the gguf package's MODEL_ARCH member
    rotary_rows: bool = False  # q / k rows half-split (HF) instead of interleaved (llama.cpp)
    norm_shift: float = 0.0  # HF computes x * (shift + w) where llama.cpp computes x * w


# Architectures whose export is tested token for token against llama.cpp.
_LAYOUTS = {
    "llama": _Layout("LLAMA", rotary_rows=True),
    "gemma3": _Layout("GEMMA3", norm_shift=1.0),
}


def _add_tensor(writer: Any, name: str, array: Any, dtype: GgufDtype) -> None:
    """Matrices in `dtype`; vectors (norms, biases) stay f32, as llama.cpp's converter keeps
    them. A matrix whose rows are not whole blocks of 32 stays f16 under q8_0."""
    gguf = _gguf()
    import numpy as np

    if array.ndim < 2 or dtype == "f32":
        writer.add_tensor(name, array)
    elif dtype == "q8_0" and array.shape[-1] % 32 == 0:
        q8 = gguf.GGMLQuantizationType.Q8_0
        writer.add_tensor(name, gguf.quants.quantize(array.astype(np.float32), q8), raw_dtype=q8)
    else:
        writer.add_tensor(name, array.astype(np.float16))


def export_gguf(
    state_dict: dict[str, Any],
    template: Path,
    out: Path,
    *,
    dtype: GgufDtype = "f32",
    name: str | None = None,
) -> Path:
    """Write `state_dict` (transformers names) as `out`, with `template`'s metadata."""
    gguf = _gguf()

    reader = gguf.GGUFReader(template)
    arch = str(reader.fields["general.architecture"].contents())
    layout = _LAYOUTS.get(arch)
    if layout is None:
        raise GgufExportError(
            f"GGUF export supports {', '.join(sorted(_LAYOUTS))} models;"
            f" {template.name} is {arch!r}",
            hint="export the HF checkpoint with llama.cpp's convert_hf_to_gguf.py instead",
        )
    n_head = int(reader.fields[f"{arch}.attention.head_count"].contents())
    n_kv = int(reader.fields[f"{arch}.attention.head_count_kv"].contents())
    n_blocks = int(reader.fields[f"{arch}.block_count"].contents())
    expected = {t.name: tuple(int(d) for d in reversed(t.shape.tolist())) for t in reader.tensors}
    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, layout.model_arch), n_blocks)

    tensors: dict[str, Any] = {}
    for hf_name, tensor in state_dict.items():
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise GgufExportError(f"no GGUF name for tensor {hf_name!r}")
        tensors[gguf_name] = _to_llama_cpp(tensor, gguf_name, layout, n_head, n_kv)
    if "output.weight" not in expected:
        tensors.pop("output.weight", None)  # a head tied to the embedding is not stored
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise GgufExportError(
            f"the checkpoint does not match {template.name}: missing {missing[:3]},"
            f" unexpected {extra[:3]}",
            hint="give the GGUF of the model this checkpoint was trained from (--template)",
        )
    for gguf_name, array in tensors.items():
        if array.shape != expected[gguf_name]:
            raise GgufExportError(
                f"{gguf_name} has shape {array.shape}, {template.name} has {expected[gguf_name]}",
                hint="the checkpoint and the template must be the same model size",
            )

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, arch)
        for key, field in reader.fields.items():
            if key.startswith(_SKIPPED_KEYS):
                continue
            if key == "general.name" and name:
                writer.add_name(name)
                continue
            sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(key, field.contents(), field.types[0], sub_type=sub_type)
        file_types = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "q8_0": "MOSTLY_Q8_0"}
        writer.add_file_type(getattr(gguf.LlamaFileType, file_types[dtype]))
        for gguf_name in (t.name for t in reader.tensors):  # the template's order
            _add_tensor(writer, gguf_name, tensors[gguf_name], dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.chmod(tmp, mode_for(out))  # mkstemp made it 0600: the user's umask instead
        os.replace(tmp, out)
    except OSError as exc:
        raise OpenparityError(
            f"cannot write {out} ({exc.strerror or exc})",
            hint="check the directory, permissions and free disk space",
        ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def _to_llama_cpp(tensor: Any, gguf_name: str, layout: _Layout, n_head: int, n_kv: int) -> Any:
    array = tensor.detach().to("cpu").float().numpy()
    if layout.rotary_rows and gguf_name.endswith("attn_q.weight"):
        return _rotary_layout(array, n_head)
    if layout.rotary_rows and gguf_name.endswith("attn_k.weight"):
        return _rotary_layout(array, n_kv)
    if layout.norm_shift and gguf_name.endswith("norm.weight"):
        return array + layout.norm_shift
    return array


def _rotary_layout(weight: Any, n_heads: int) -> Any:
    """transformers' half-split rotary rows back to llama.cpp's interleaved pairs."""
    rows = weight.shape[0]
    return (
        weight.reshape(n_heads, 2, rows // n_heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def _gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise MissingDependencyError(
            "GGUF export needs the gguf package", hint='pip install "openparity[train]"'
        ) from None
    return gguf
