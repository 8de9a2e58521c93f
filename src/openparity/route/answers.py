"""An upstream's answer as the Completion the cascade checks, costs and keeps: assembled from a
stream, from a forwarded endpoint's body, or replayed as stream chunks."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from openparity.models.chat_body import (
    assemble_chunks,
    chunks_of,
    completion_from_body,
    first_choice_text,
)
from openparity.models.types import ChatRequest, Completion, StreamChunk
from openparity.route.outcome import Attempt
from openparity.route.tier import Tier, charge


def assembled(
    tier: Tier,
    received: list[StreamChunk],
    finish: str,
    usage: tuple[int, int] | None,
    latency: float,
) -> Completion:
    """The streamed answer so far as a Completion: from the upstream's own events when it sent
    them (tool calls, n choices and every other field kept), from the text otherwise."""
    events = [c.event for c in received if c.event is not None]
    texts = [c.text for c in received if c.text]
    if events and finish != "partial":
        with contextlib.suppress(KeyError, IndexError, TypeError, AttributeError, ValueError):
            return completion_from_body(
                assemble_chunks(events),
                model=tier.name,
                latency_s=latency,
                cost=tier.spec.cost,
                want_logprobs=False,
                usage_fallback=usage or (0, len(texts)),
            )
    prompt_tokens, completion_tokens = usage or (0, len(texts))
    return Completion(
        text="".join(texts),
        finish_reason=finish,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_s=latency,
        model=tier.name,
        cost_usd=tier.spec.cost(prompt_tokens, completion_tokens),
    )


def forwarded(tier: Tier, attempt: Attempt, answer: dict[str, Any]) -> Completion:
    """A forwarded endpoint's answer, costed from its usage, as the Completion the ledger keeps."""
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    completion_tokens = int(usage.get("completion_tokens") or 0)
    charge(attempt, tier, prompt_tokens, completion_tokens)
    return Completion(
        text="",
        finish_reason="stop",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_s=attempt.latency_s,
        model=tier.name,
        cost_usd=attempt.cost_usd,
        raw=answer,
    )


def whole_answer_chunks(completion: Completion) -> list[StreamChunk]:
    """A whole answer as stream chunks: the upstream's body as events when there is one."""
    if completion.raw is None:
        return [StreamChunk(completion.text)]
    return [StreamChunk(first_choice_text(e), event=e) for e in chunks_of(completion.raw)]


def is_empty(text: str, tool_calls: Sequence[Any], finish_reason: str) -> bool:
    return not text.strip() and not tool_calls and finish_reason != "length"


def checked_whole(request: ChatRequest) -> bool:
    """Tool calls and several choices are only checked whole, so nothing streams early."""
    return bool(request.extra.get("tools") or request.extra.get("functions")) or (
        int(request.extra.get("n") or 1) > 1
    )
