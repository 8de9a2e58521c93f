"""models.yaml: named models with their backend, endpoint, key source, price and concurrency.

    models:
      gpt4o:
        spec: openai:gpt-4o
        price: {input: 2.50, output: 10.00}      # USD per million tokens
      qwen-vllm:
        backend: openai
        model: Qwen/Qwen2.5-7B-Instruct
        base_url: http://127.0.0.1:8000/v1
        api_key_env: VLLM_API_KEY
        max_concurrency: 64

The file is found at an explicit path, else $OPENPARITY_MODELS, else ./models.yaml.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from openparity.models.errors import ModelConfigError, UnknownModelError
from openparity.models.prices import Price
from openparity.models.spec import ModelSpec, parse_spec, with_overrides
from openparity.yamlfile import read_validated

MODELS_FILE_ENV = "OPENPARITY_MODELS"


class _PriceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    source: str = "models.yaml"


class _ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spec: str | None = None
    backend: str | None = None
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    api_key_file: Path | None = None
    price: _PriceEntry | None = None
    max_concurrency: int | None = Field(default=None, ge=1)
    timeout_s: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0)
    n_ctx: int | None = Field(default=None, ge=128)
    vision: bool | None = None

    @model_validator(mode="after")
    def _spec_or_backend(self) -> _ModelEntry:
        if self.spec is None and (self.backend is None or self.model is None):
            raise ValueError("give either 'spec' or both 'backend' and 'model'")
        return self


class _CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: dict[str, _ModelEntry] = Field(default_factory=dict)


@dataclass(frozen=True)
class ModelCatalog:
    """The named models of one models.yaml (empty when there is none)."""

    models: dict[str, ModelSpec] = field(default_factory=dict)
    path: Path | None = None

    def resolve(self, name_or_spec: str) -> ModelSpec:
        """A models.yaml name first, then an inline spec such as openai:gpt-4o."""
        if name_or_spec in self.models:
            return self.models[name_or_spec]
        try:
            return parse_spec(name_or_spec)
        except UnknownModelError as exc:
            if self.path is None:
                raise
            names = ", ".join(sorted(self.models)) or "none"
            raise UnknownModelError(
                exc.message, hint=f"{exc.hint}; names in {self.path}: {names}"
            ) from None


def find_models_file(explicit: Path | None = None) -> Path | None:
    """The models.yaml to use: explicit path, else $OPENPARITY_MODELS, else ./models.yaml."""
    if explicit is not None:
        return explicit
    env = os.environ.get(MODELS_FILE_ENV)
    if env:
        return Path(env)
    local = Path("models.yaml")
    return local if local.is_file() else None


def load_catalog(path: Path | None = None) -> ModelCatalog:
    """Read and validate models.yaml; a missing default file gives an empty catalog."""
    path = find_models_file(path)
    if path is None:
        return ModelCatalog()
    parsed = read_validated(
        path,
        _CatalogFile,
        ModelConfigError,
        what="models file",
        hint="see examples/models.yaml for the expected shape",
        missing_hint=f"fix the path or unset ${MODELS_FILE_ENV}",
    )
    return ModelCatalog(
        models={name: _entry_to_spec(path, name, e) for name, e in parsed.models.items()},
        path=path,
    )


def _entry_to_spec(path: Path, name: str, entry: _ModelEntry) -> ModelSpec:
    if entry.spec is not None:
        inline = entry.spec
    elif entry.backend in ("local", "hf"):
        inline = f"{entry.backend}:{entry.model}"
    elif entry.backend == "openai":
        inline = f"openai:{entry.model}" + (f"@{entry.base_url}" if entry.base_url else "")
    else:
        raise ModelConfigError(
            f"{path}: models.{name}.backend: unknown backend {entry.backend!r}",
            hint="use 'local', 'hf' or 'openai' (any OpenAI-compatible server)",
        )
    try:
        base = parse_spec(inline)
    except (UnknownModelError, ModelConfigError) as exc:
        raise ModelConfigError(f"{path}: models.{name}: {exc.one_line()}") from None
    price = None
    if entry.price is not None:
        price = Price(entry.price.input, entry.price.output, entry.price.source, "models.yaml")
    spec = with_overrides(
        base,
        name=name,
        base_url=entry.base_url.rstrip("/") if entry.base_url else None,
        api_key_env=entry.api_key_env,
        api_key_file=entry.api_key_file,
        price=price,
        max_concurrency=entry.max_concurrency,
        timeout_s=entry.timeout_s,
        max_retries=entry.max_retries,
        n_ctx=entry.n_ctx,
        vision=entry.vision,
    )
    return spec
