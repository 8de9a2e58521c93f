"""WHO ANSWERS: one async interface over every backend (local llama.cpp, OpenAI-compatible HTTP).

from openparity.models import ChatRequest, open_model

async with open_model("local:smollm2-135m") as model:
    completion = await model.generate(ChatRequest.from_prompt("What is 2 + 2?"))
"""

from __future__ import annotations

from pathlib import Path

from openparity.models.base import BatchResult, ChatModel
from openparity.models.catalog import ModelCatalog, load_catalog
from openparity.models.embedded import DEFAULT_LOCAL_MODEL
from openparity.models.spec import ModelSpec
from openparity.models.types import (
    ChatRequest,
    Completion,
    Loglikelihood,
    LoglikelihoodRequest,
    TokenLogprob,
)

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "BatchResult",
    "ChatModel",
    "ChatRequest",
    "Completion",
    "Loglikelihood",
    "LoglikelihoodRequest",
    "ModelCatalog",
    "ModelSpec",
    "TokenLogprob",
    "open_model",
    "resolve_model",
]


def resolve_model(
    name_or_spec: str | ModelSpec,
    *,
    catalog: ModelCatalog | None = None,
    models_file: Path | None = None,
) -> ModelSpec:
    """A ModelSpec from a spec string or a models.yaml name."""
    if isinstance(name_or_spec, ModelSpec):
        return name_or_spec
    return (catalog or load_catalog(models_file)).resolve(name_or_spec)


def open_model(
    name_or_spec: str | ModelSpec,
    *,
    catalog: ModelCatalog | None = None,
    models_file: Path | None = None,
) -> ChatModel:
    """Open a model for generation; the backend is imported only when it is needed."""
    spec = resolve_model(name_or_spec, catalog=catalog, models_file=models_file)
    if spec.backend == "local":
        from openparity.models.local_backend import LocalModel

        return LocalModel(spec)
    if spec.backend == "hf":
        from openparity.models.hf_backend import HFModel

        return HFModel(spec)
    from openparity.models.openai_backend import OpenAICompatibleModel

    return OpenAICompatibleModel(spec)
