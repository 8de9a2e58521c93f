"""The chat wire format as data: a body streamed as chunks and assembled again is the same body,
tool calls and unknown fields included; argument pieces arrive in any split."""

from __future__ import annotations

import json

from openparity.models.chat_body import (
    assemble_chunks,
    choices_of,
    chunks_of,
    completion_from_body,
    tool_call_deltas,
)

WEATHER_ARGS = json.dumps({"city": "北京", "unit": "celsius"}, ensure_ascii=False)
BODY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "system_fingerprint": "fp_1",
    "vendor_field": {"kept": True},
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "weather", "arguments": WEATHER_ARGS},
                    },
                    {
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "time", "arguments": "{}"},
                    },
                ],
            },
            "finish_reason": "tool_calls",
            "logprobs": None,
        },
        {
            "index": 1,
            "message": {"role": "assistant", "content": "晴天", "reasoning_content": "think"},
            "finish_reason": "stop",
            "logprobs": None,
        },
    ],
    "usage": {
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "total_tokens": 12,
        "completion_tokens_details": {"reasoning_tokens": 3},
    },
}


def test_a_body_streamed_and_assembled_is_the_same_body():
    events = chunks_of(BODY)
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    assert assemble_chunks(events) == BODY


def test_tool_call_arguments_split_anywhere_are_joined_in_order():
    base = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m"}

    def event(delta, finish=None):
        return base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    head = {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "weather", "arguments": ""},
    }
    pieces = [WEATHER_ARGS[i : i + 3] for i in range(0, len(WEATHER_ARGS), 3)]
    events = [event({"role": "assistant", "content": None}), event({"tool_calls": [head]})]
    events += [event({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces]
    events.append(event({}, "tool_calls"))
    body = assemble_chunks(events)
    call = body["choices"][0]["message"]["tool_calls"][0]
    assert call == {
        "id": "call_a",
        "type": "function",
        "function": {"name": "weather", "arguments": WEATHER_ARGS},
    }
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert tool_call_deltas(events[2]) and not tool_call_deltas(events[0])


def test_a_completion_keeps_tool_calls_and_each_choice():
    completion = completion_from_body(
        BODY, model="m", latency_s=0.1, cost=lambda p, c: None, want_logprobs=False
    )
    assert completion.text == "" and completion.tool_calls[0]["function"]["name"] == "weather"
    assert completion.raw is BODY
    first, second = choices_of(completion)
    assert len(first.tool_calls) == 2 and second.text == "晴天" and not second.tool_calls
    assert second.finish_reason == "stop"
