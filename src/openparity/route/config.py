"""gateway.yaml: the routing policy (ordered tiers, their checks and limits) and the server's
settings. `openparity route calibrate` rewrites the thresholds in it, atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from openparity.atomic import write_atomic
from openparity.errors import OpenparityError
from openparity.route.checks import DEFAULT_CHECKS, AnyCheck, Check
from openparity.yamlfile import read_validated


class GatewayConfigError(OpenparityError):
    """gateway.yaml is missing or malformed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TierDefaults(_Strict):
    """Values this tier sends when the client did not set them (and only then). Without
    them an OpenAI-compatible upstream applies its own defaults, and an in-process model the
    API's documented ones (the rest of the context, temperature 1, top_p 1)."""

    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)


class TierConfig(_Strict):
    """One model in the cascade. Checks run in the order listed; the first failure falls back."""

    model: str
    defaults: TierDefaults = Field(default_factory=TierDefaults)
    # the model's context in tokens: a request asking more max_tokens than every tier holds is
    # refused with a 400 up front; budgets reserve at most this many output tokens. Default:
    # n_ctx for in-process models, unknown (never refused on it) for API models.
    context_tokens: int | None = Field(None, ge=1)
    checks: list[AnyCheck] = Field(default_factory=lambda: list(DEFAULT_CHECKS))
    timeout_s: float = Field(60.0, gt=0)  # whole answer (non-streamed) or between tokens
    first_token_timeout_s: float | None = Field(None, gt=0)  # streamed requests
    max_concurrency: int = Field(16, ge=1)
    queue_timeout_s: float = Field(1.0, ge=0)  # wait this long for a free slot, then fall back
    retries: int = Field(1, ge=0, le=10)  # same-tier retries on 5xx / 429 / timeouts
    max_retry_wait_s: float = Field(2.0, ge=0)  # longer Retry-After: fall back instead
    breaker_failures: int = Field(5, ge=1)  # consecutive failures that open the breaker
    breaker_cooldown_s: float = Field(30.0, gt=0)
    precommit_tokens: int | Literal["all"] = "all"  # streamed output held back for checks

    @property
    def checks_need_logprobs(self) -> bool:
        return any(c.needs_logprobs for c in self.checks)


class AuthConfig(_Strict):
    required: bool = True  # requests need a gateway key (openparity route keys add)
    # keys are re-read from the ledger database this often, in the background (a revoked key
    # stops within about this long); a slow database never holds up a request
    keys_refresh_s: float = Field(1.0, gt=0)
    # With an admin key (from this variable or file), /metrics and the details of /health
    # (tiers, breakers, replica) need `Authorization: Bearer <admin key>`; /health without it
    # says only ok / degraded, for load balancers.
    admin_key_env: str | None = None
    admin_key_file: Path | None = None

    def admin_key(self) -> str | None:
        if self.admin_key_file is not None:
            try:
                key = self.admin_key_file.expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise GatewayConfigError(
                    f"cannot read auth.admin_key_file {self.admin_key_file} ({exc.strerror})"
                ) from None
        else:
            key = os.environ.get(self.admin_key_env or "", "").strip()
        if (self.admin_key_env or self.admin_key_file) and len(key) < 16:
            where = self.admin_key_file or f"${self.admin_key_env}"
            raise GatewayConfigError(
                f"the admin key in {where} is missing or shorter than 16 characters",
                hint="set it to a long random secret, e.g. python -c 'import secrets;"
                " print(secrets.token_urlsafe(32))'",
            )
        return key or None


class LedgerConfig(_Strict):
    """Where requests, attempts and keys are stored: the SQLite file `path`, or the PostgreSQL
    database `url` (one store for several replicas; `${VAR}` takes the password from the
    environment)."""

    path: Path = Path(".openparity/gateway.sqlite")
    url: str | None = Field(None, pattern=r"^postgres(ql)?://")
    store_prompts: bool = False  # prompts and answers stay out of the ledger unless set
    # the longest a request waits to read the ledger (rebuilding a key's spending after the
    # shared state lost it); past it the replica's own accounting decides
    read_timeout_s: float = Field(1.0, gt=0, le=30)

    @property
    def target(self) -> Path | str:
        return os.path.expandvars(self.url) if self.url else self.path


class SharedStateConfig(_Strict):
    """Rate limits, budgets and circuit breakers shared by every replica (`serve --workers N`,
    or several hosts) through Redis; without it they live in the one process."""

    redis_url: str = Field(pattern=r"^(redis|rediss|unix)://")
    # the longest a request waits on Redis; past it the replica decides alone (and logs it)
    timeout_s: float = Field(0.25, gt=0, le=10)


class Calibration(_Strict):
    """What `openparity route calibrate` guaranteed, written next to the thresholds it chose."""

    run_id: str
    task: str
    items: int
    epsilon: float
    delta: float
    risk: str
    upper_bound: float
    open_share: float
    saving_share: float | None = None
    settings: dict[str, Any] = Field(default_factory=dict)  # how the run's items were asked
    guarantee: str = ""  # the guarantee in words, with where it was earned


class GatewayConfig(_Strict):
    name: str = "openparity-hybrid"  # the model name clients ask for
    tiers: list[TierConfig] = Field(min_length=1)
    models_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8800
    max_request_bytes: int = Field(1_048_576, ge=1024)
    serve_unchecked: bool = False  # when every tier fails, never serve a check-failed answer
    # on SIGTERM, requests in flight get this long to finish (default: the longest tier
    # timeout); a stream still running then ends with an SSE error event
    drain_s: float | None = Field(None, gt=0)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    shared_state: SharedStateConfig | None = None
    calibration: Calibration | None = None

    @property
    def drain_seconds(self) -> float:
        return self.drain_s or max(t.timeout_s for t in self.tiers)

    @field_validator("tiers")
    @classmethod
    def _distinct(cls, tiers: list[TierConfig]) -> list[TierConfig]:
        seen = [t.model for t in tiers]
        if len(set(seen)) != len(seen):
            raise ValueError("a model appears in two tiers")
        return tiers


def load_gateway_config(path: Path) -> GatewayConfig:
    config = read_validated(
        path,
        GatewayConfig,
        GatewayConfigError,
        what="gateway config",
        hint="see examples/gateway.yaml",
    )
    base = Path(path).parent
    for tier in config.tiers:  # user check files are relative to the config
        for index, check in enumerate(tier.checks):
            file = getattr(check, "file", None)
            if file is not None and not file.is_absolute():
                tier.checks[index] = check.model_copy(update={"file": base / file})
    return config


def save_gateway_config(config: GatewayConfig, path: Path) -> None:
    """Write the config back (atomically), e.g. with calibrated thresholds."""
    data: dict[str, Any] = config.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data["tiers"] = [_tier_dict(t) for t in config.tiers]
    text = "# openparity gateway config (rewritten by `openparity route calibrate`)\n"
    text += yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    write_atomic(Path(path), text)


def _tier_dict(tier: TierConfig) -> dict[str, Any]:
    data = tier.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data["checks"] = [_check_entry(c) for c in tier.checks]
    return data


def _check_entry(check: Check) -> Any:
    fields = check.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return check.name if not fields else {"type": check.name, **fields}
