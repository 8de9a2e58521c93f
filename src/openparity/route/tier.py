"""One upstream of the cascade: its model, breaker, slots and retry policy, what it can serve and
what a call to it can cost, and the request as it gets it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from openparity.errors import OpenparityError
from openparity.models import ChatModel, open_model, resolve_model
from openparity.models.errors import MissingAPIKeyError
from openparity.models.retry import RetryPolicy
from openparity.models.spec import ModelSpec, with_overrides
from openparity.models.types import ChatRequest, Completion
from openparity.redact import redact_url
from openparity.route.checks import Check
from openparity.route.config import TierConfig
from openparity.route.outcome import Attempt, RouteResult
from openparity.route.resilience import CircuitBreaker, Slots


@dataclass
class Tier:
    """One upstream of the cascade with its own breaker, slots and retry policy."""

    index: int
    config: TierConfig
    spec: ModelSpec
    model: ChatModel
    breaker: CircuitBreaker
    slots: Slots
    retry: RetryPolicy
    unavailable: str | None = None  # why this tier cannot be used at all (e.g. no API key)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def checks(self) -> list[Check]:
        return self.config.checks

    @property
    def context_tokens(self) -> int | None:
        """The model's context in tokens, when known (configured, or an in-process model's)."""
        if self.config.context_tokens is not None:
            return self.config.context_tokens
        return self.spec.n_ctx if self.spec.backend in ("local", "hf") else None

    def max_call_cost(self, request: ChatRequest, result: RouteResult) -> float | None:
        """The most one call to this tier can cost for `request` (0 for an unpriced tier);
        None when its output has no known bound (no max_tokens, default or context)."""
        if self.spec.price is None:
            return 0.0
        output = 0 if result.endpoint == "/embeddings" else self.max_output_tokens(request)
        if output is None:
            return None
        choices = int(request.extra.get("n") or 1)
        return self.spec.price.cost(result.prompt_tokens_bound, output * choices)

    def max_output_tokens(self, request: ChatRequest) -> int | None:
        """The most tokens this tier's answer to `request` can have, when known."""
        asked = request.max_tokens or self.config.defaults.max_tokens
        context = self.context_tokens
        if asked is None:
            return context
        return asked if context is None else min(asked, context)

    def cannot_serve(self, request: ChatRequest) -> str | None:
        """What in `request` this tier's backend cannot honour (tools, n > 1, images); None
        when it can serve it. OpenAI-compatible upstreams get every field as sent."""
        if self.spec.backend == "openai":
            return None
        if request.extra.get("tools") or request.extra.get("functions"):
            return "tools"
        if int(request.extra.get("n") or 1) > 1:
            return "n > 1"
        for message in request.messages:
            content = message.get("content")
            if isinstance(content, list) and any(
                isinstance(p, dict) and p.get("type") not in (None, "text") for p in content
            ):
                return "image or audio content"
        return None

    def redact(self, text: str) -> str:
        """`text` without the upstream's API key or URL password (an upstream may echo them
        in an error)."""
        try:
            secrets = [self.spec.api_key(), urlsplit(self.spec.base_url or "").password]
        except OpenparityError:
            secrets = [urlsplit(self.spec.base_url or "").password]
        for secret in secrets:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "[redacted]")
        return redact_url(text)


def open_tier(index: int, config: TierConfig, models_file: Path | None) -> Tier:
    # The router does the retries itself, so that each one is counted and the breaker sees it.
    spec = with_overrides(
        resolve_model(config.model, models_file=models_file),
        max_retries=0,
        timeout_s=config.timeout_s,
        max_concurrency=config.max_concurrency,
    )
    unavailable = None
    try:
        model = open_model(spec)
    except MissingAPIKeyError as exc:  # serve the other tiers; this one says why it cannot
        unavailable, model = exc.one_line(), _Unavailable(spec, exc)
    return Tier(
        index=index,
        config=config,
        spec=spec,
        unavailable=unavailable,
        model=model,
        breaker=CircuitBreaker(config.breaker_failures, config.breaker_cooldown_s),
        slots=Slots(config.max_concurrency, config.queue_timeout_s),
        retry=RetryPolicy(
            max_retries=config.retries, initial_delay_s=0.05, max_delay_s=config.max_retry_wait_s
        ),
    )


class _Unavailable(ChatModel):
    """A tier's model that cannot be opened (its API key is missing): never called, the
    router skips the tier as `unavailable`."""

    def __init__(self, spec: ModelSpec, error: OpenparityError) -> None:
        super().__init__(spec)
        self.error = error

    async def generate(self, request: ChatRequest) -> Completion:
        raise self.error


def for_tier(tier: Tier, request: ChatRequest) -> ChatRequest:
    """The request as this tier gets it: its configured defaults where the client set
    nothing, and logprobs when a check needs them."""
    changes: dict[str, Any] = {
        name: value
        for name, value in tier.config.defaults.model_dump().items()
        if value is not None and getattr(request, name) is None
    }
    if tier.config.checks_need_logprobs and not request.logprobs:
        changes["logprobs"] = True
    return replace(request, **changes) if changes else request


def charge(attempt: Attempt, tier: Tier, prompt_tokens: int, completion_tokens: int) -> None:
    attempt.prompt_tokens, attempt.completion_tokens = prompt_tokens, completion_tokens
    attempt.cost_usd += tier.spec.cost(prompt_tokens, completion_tokens) or 0.0
