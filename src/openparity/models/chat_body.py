"""The OpenAI chat wire format as data: a chat.completion body into a Completion, the chunks of
a stream back into one body, and one body into the chunks that stream it. Fields openparity does
not model stay in the body untouched, so a gateway can hand them on."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from openparity.models.types import Completion, TokenLogprob


def completion_from_body(
    body: Mapping[str, Any],
    *,
    model: str,
    latency_s: float,
    cost: Callable[[int, int], float | None],
    want_logprobs: bool,
    usage_fallback: tuple[int, int] | None = None,
) -> Completion:
    """The first choice of `body` as a Completion (`raw` keeps the whole body).
    Raises KeyError / IndexError / TypeError / AttributeError when it is not a chat completion."""
    choice = body["choices"][0]
    message = choice["message"]
    usage = body.get("usage") or {}
    if usage:
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
    else:
        prompt_tokens, completion_tokens = usage_fallback or (0, 0)
    return Completion(
        text=message.get("content") or "",
        finish_reason=choice.get("finish_reason") or "unknown",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_s=latency_s,
        model=model,
        cost_usd=cost(prompt_tokens, completion_tokens) if usage or usage_fallback else None,
        logprobs=chat_logprobs(choice) if want_logprobs else None,
        tool_calls=tuple(message.get("tool_calls") or ()),
        raw=body,
    )


def choices_of(completion: Completion) -> list[Completion]:
    """One Completion per choice of an n > 1 answer; `[completion]` when there is one choice."""
    choices = (completion.raw or {}).get("choices") or ()
    if len(choices) < 2:
        return [completion]
    return [
        replace(
            completion,
            text=(choice.get("message") or {}).get("content") or "",
            finish_reason=choice.get("finish_reason") or "unknown",
            tool_calls=tuple((choice.get("message") or {}).get("tool_calls") or ()),
            logprobs=chat_logprobs(choice) if completion.logprobs is not None else None,
        )
        for choice in choices
    ]


def chat_logprobs(choice: Mapping[str, Any]) -> tuple[TokenLogprob, ...]:
    """The token logprobs of one chat choice (`choice.logprobs.content`)."""
    content = (choice.get("logprobs") or {}).get("content") or []
    return tuple(
        TokenLogprob(
            token=item["token"],
            logprob=float(item["logprob"]),
            top=tuple(
                (alt["token"], float(alt["logprob"])) for alt in item.get("top_logprobs") or []
            ),
        )
        for item in content
    )


def assemble_chunks(events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One chat.completion body from the chat.completion.chunk events of a stream: per choice,
    content, refusal and each tool call's arguments concatenated in order; every other field
    as last sent; `usage` from the event that carries it."""
    body: dict[str, Any] = {"object": "chat.completion"}
    choices: dict[int, dict[str, Any]] = {}
    for event in events:
        for key, value in event.items():
            if key not in ("choices", "object") and (value is not None or key not in body):
                body[key] = value
        for delta_choice in event.get("choices") or ():
            index = int(delta_choice.get("index") or 0)
            choice = choices.setdefault(
                index, {"index": index, "message": {"role": "assistant", "content": None}}
            )
            _merge_choice(choice, delta_choice)
    body["choices"] = [choices[i] for i in sorted(choices)]
    return body


def _merge_choice(choice: dict[str, Any], delta_choice: Mapping[str, Any]) -> None:
    message = choice["message"]
    for key, value in (delta_choice.get("delta") or {}).items():
        if key in ("content", "refusal", "reasoning_content") and isinstance(value, str):
            message[key] = (message.get(key) or "") + value
        elif key == "tool_calls" and value:
            calls = message.setdefault("tool_calls", [])
            for part in value:
                _merge_tool_call(calls, part)
        elif value is not None or key not in message:
            message[key] = value
    for key, value in delta_choice.items():
        if key == "logprobs" and value:
            logprobs = choice.setdefault("logprobs", {})
            for field, items in value.items():
                if isinstance(items, list):
                    logprobs[field] = (logprobs.get(field) or []) + items
        elif key not in ("delta", "index", "logprobs") and (value is not None or key not in choice):
            choice[key] = value
    choice.setdefault("finish_reason", None)
    choice.setdefault("logprobs", None)


def _merge_tool_call(calls: list[dict[str, Any]], part: Mapping[str, Any]) -> None:
    index = int(part.get("index", len(calls)))
    while len(calls) <= index:
        calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    call = calls[index]
    for key, value in part.items():
        if key == "function":
            for name, piece in (value or {}).items():
                if name in ("name", "arguments") and isinstance(piece, str):
                    call["function"][name] = call["function"].get(name, "") + piece
                else:
                    call["function"][name] = piece
        elif key != "index" and value is not None:
            call[key] = value


def chunks_of(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The chat.completion.chunk events that stream `body` whole: per choice a delta with its
    message (each tool call with its index), then its finish; `usage` in a last event."""
    base = {k: v for k, v in body.items() if k not in ("choices", "usage", "object")}
    base["object"] = "chat.completion.chunk"
    events = []
    for choice in body.get("choices") or ():
        index = choice.get("index", 0)
        delta = copy.deepcopy(dict(choice.get("message") or {}))
        for position, call in enumerate(delta.get("tool_calls") or ()):
            call["index"] = position
        extra = {k: v for k, v in choice.items() if k not in ("message", "finish_reason", "index")}
        opening = {"index": index, "delta": delta, **extra, "finish_reason": None}
        closing = {"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}
        events += [base | {"choices": [opening]}, base | {"choices": [closing]}]
    if body.get("usage"):
        events.append(base | {"choices": [], "usage": body["usage"]})
    return events


def tool_call_deltas(event: Mapping[str, Any] | None) -> bool:
    """Whether a chunk event carries tool-call output."""
    return any((c.get("delta") or {}).get("tool_calls") for c in (event or {}).get("choices") or ())


def first_choice_text(event: Mapping[str, Any]) -> str:
    """The content a chunk event adds to the first choice (index 0)."""
    return "".join(
        (c.get("delta") or {}).get("content") or ""
        for c in event.get("choices") or ()
        if not c.get("index")
    )
