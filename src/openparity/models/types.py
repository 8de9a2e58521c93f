"""The data that crosses the model interface: requests in, completions and log-likelihoods out."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Message = Mapping[str, Any]
"""An OpenAI-style chat message: {"role": ..., "content": str | list of content parts}."""


@dataclass(frozen=True)
class ChatRequest:
    """One chat generation request, backend-neutral.

    `extra` carries OpenAI parameters openparity does not model itself (response_format, tools,
    ...); backends that do not understand one of them ignore it. `max_tokens`, `temperature`
    and `top_p` may be None: the caller did not set them (a gateway client that sent none), so
    an OpenAI-compatible upstream gets no such field and applies its own default; in-process
    backends use the API's documented defaults (the rest of the context, 1.0, 1.0).
    """

    messages: Sequence[Message]
    max_tokens: int | None = 256
    temperature: float | None = 0.0
    top_p: float | None = 1.0
    stop: Sequence[str] = ()
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_prompt(cls, prompt: str, *, system: str | None = None, **kwargs: Any) -> ChatRequest:
        """A single-turn request from a user prompt (and an optional system prompt)."""
        messages: list[Message] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": prompt})
        return cls(messages=messages, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-able form (used for caching and hashing)."""
        return {
            "messages": [dict(m) for m in self.messages],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": list(self.stop),
            "seed": self.seed,
            "logprobs": self.logprobs,
            "top_logprobs": self.top_logprobs,
            "extra": dict(self.extra),
        }

    def cache_key(self, model_id: str) -> str:
        """A stable hash of (model, request): equal keys mean an equal call."""
        payload = json.dumps(
            {"model": model_id, "request": self.to_dict()},
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token with its log-probability and the most likely alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Completion:
    """What one model call returned, with its accounting."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    model: str
    cost_usd: float | None
    logprobs: tuple[TokenLogprob, ...] | None = None
    tool_calls: tuple[Mapping[str, Any], ...] = ()  # OpenAI-style {id, type, function}
    raw: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    """The upstream's chat.completion body as received (OpenAI-compatible backends), so that a
    gateway can pass every field it does not model back to its client."""

    @property
    def mean_logprob(self) -> float | None:
        """Mean log-probability of the generated tokens, when logprobs were requested."""
        if not self.logprobs:
            return None
        return sum(t.logprob for t in self.logprobs) / len(self.logprobs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_s": self.latency_s,
            "model": self.model,
            "cost_usd": self.cost_usd,
            "logprobs": None
            if self.logprobs is None
            else [{"token": t.token, "logprob": t.logprob, "top": t.top} for t in self.logprobs],
            "tool_calls": [dict(c) for c in self.tool_calls],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Completion:
        """The inverse of `to_dict` (after a JSON round trip)."""
        logprobs = data.get("logprobs")
        if logprobs is not None:
            logprobs = tuple(
                TokenLogprob(t["token"], t["logprob"], tuple(map(tuple, t["top"])))
                for t in logprobs
            )
        return cls(
            **{**data, "logprobs": logprobs, "tool_calls": tuple(data.get("tool_calls", ()))}
        )


@dataclass(frozen=True)
class StreamChunk:
    """One piece of a streamed answer. The last chunk has `finish_reason`; `usage` (prompt,
    completion tokens) comes on the last chunk when the backend reports it. OpenAI-compatible
    backends give one chunk per server-sent event, with the event itself (tool-call deltas and
    every other field travel there); `text` is its first choice's content."""

    text: str
    finish_reason: str | None = None
    usage: tuple[int, int] | None = None
    event: Mapping[str, Any] | None = None  # the upstream's chat.completion.chunk, as received


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Score `continuation` given `context`: log P(continuation | context).

    With `messages`, `context` is ignored: the model's own chat template renders the messages
    with the assistant's turn opened, and what is scored is the assistant turn that template
    writes for the reply `continuation` (the reply and its end-of-turn marker). Only backends
    that hold the template (`hf:`, `local:`) can do this."""

    context: str
    continuation: str
    messages: tuple[Message, ...] | None = None


@dataclass(frozen=True)
class Loglikelihood:
    """Sum of the continuation's token log-probabilities, and whether greedy decoding yields it."""

    logprob: float
    is_greedy: bool
    n_tokens: int
