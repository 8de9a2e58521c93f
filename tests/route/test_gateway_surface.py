"""The whole OpenAI surface through the gateway, with the official `openai` client: tool calls
(streamed and not), structured output with `parse()`, n choices, embeddings, unknown fields both
ways, tier listing and pinning. Tiers: the embedded llama.cpp model, then two scripted upstreams
(open, closed) that emit tool calls when told to."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time

import openai
import pytest
from pydantic import BaseModel

from tests.route.gateway import running_gateway, stub_pair

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
GOOD_CALL = {"name": "get_weather", "arguments": json.dumps({"city": "北京", "unit": "c"})}
ASK_WEATHER = [{"role": "user", "content": "北京今天天气怎么样？"}]


@pytest.fixture(scope="module")
def upstreams():
    with stub_pair("open text", "closed text") as pair:
        yield pair


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, upstreams):
    open_, closed = upstreams
    config = {
        "tiers": [
            {
                "model": "local:smollm2-135m",
                "checks": ["non_empty", "json", "tool_call"],
                "precommit_tokens": "all",
            },
            {
                "model": f"openai:open@{open_.base_url}",
                "checks": ["non_empty", "tool_call"],
                "precommit_tokens": 2,
                "retries": 0,
                "breaker_failures": 1000,
            },
            {
                "model": f"openai:closed@{closed.base_url}",
                "checks": ["non_empty"],
                "retries": 1,
                "precommit_tokens": 4,
                "breaker_failures": 1000,
            },
        ]
    }
    with running_gateway(tmp_path_factory.mktemp("surface"), config) as running:
        yield running


@pytest.fixture
def client(gateway, upstreams):
    for stub in upstreams:
        stub.requests.clear()
    base_url, key, _ = gateway
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)


def tier_name(upstream, label):
    return f"openai:{label}@{upstream.base_url}"


def attempts(completion):
    return [(a["tier"], a["outcome"], a["reason"]) for a in completion.openparity["attempts"]]


def test_a_tool_call_reaches_the_client_intact(client, upstreams):
    open_, _ = upstreams
    open_.script({"tool_calls": [GOOD_CALL]})
    completion = client.chat.completions.create(
        model="openparity-hybrid",
        messages=ASK_WEATHER,
        tools=[WEATHER_TOOL],
        tool_choice="auto",
        parallel_tool_calls=False,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert (call.id, call.function.name) == ("call_0", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "北京", "unit": "c"}
    # the embedded model cannot call tools: skipped, never asked
    assert attempts(completion)[0] == (0, "skipped", "unsupported")
    sent = open_.requests[-1]["body"]
    assert sent["tools"] == [WEATHER_TOOL] and sent["tool_choice"] == "auto"
    assert sent["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    "bad_call, reason",
    [
        ({"name": "launch_rocket", "arguments": "{}"}, "unknown tool 'launch_rocket'"),
        ({"name": "get_weather", "arguments": '{"city": "北京"'}, "arguments are not JSON"),
        ({"name": "get_weather", "arguments": '{"town": "x"}'}, "does not fit the schema"),
        ({"name": "get_weather", "arguments": '["北京"]'}, "not a JSON object"),
    ],
)
def test_a_bad_tool_call_fails_its_check_and_falls_back(client, upstreams, bad_call, reason):
    open_, closed = upstreams
    open_.script({"tool_calls": [bad_call]})
    closed.script({"tool_calls": [GOOD_CALL]})
    completion = client.chat.completions.create(
        model="openparity-hybrid", messages=ASK_WEATHER, tools=[WEATHER_TOOL]
    )
    assert completion.model == tier_name(closed, "closed")
    assert completion.choices[0].message.tool_calls[0].function.arguments == GOOD_CALL["arguments"]
    tier, outcome, why = attempts(completion)[1]
    assert (tier, outcome, why) == (1, "check_failed", "check:tool_call")
    assert reason in completion.openparity["attempts"][1]["detail"]


def test_a_required_tool_call_answered_with_text_falls_back(client, upstreams):
    _, closed = upstreams
    closed.script({"tool_calls": [GOOD_CALL]})
    completion = client.chat.completions.create(
        model="openparity-hybrid",
        messages=ASK_WEATHER,
        tools=[WEATHER_TOOL],
        tool_choice="required",
    )
    assert completion.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert attempts(completion)[1] == (1, "check_failed", "check:tool_call")


def streamed(client, **kwargs):
    chunks = list(
        client.chat.completions.create(
            model="openparity-hybrid",
            messages=ASK_WEATHER,
            tools=[WEATHER_TOOL],
            stream=True,
            stream_options={"include_usage": True},
            **kwargs,
        )
    )
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for part in choice.delta.tool_calls or ():
                call = calls.setdefault(part.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = part.id or call["id"]
                if part.function:
                    call["name"] += part.function.name or ""
                    call["arguments"] += part.function.arguments or ""
    return chunks, calls


def test_streamed_tool_calls_round_trip_through_a_fallback(client, upstreams):
    open_, closed = upstreams
    second = {"name": "get_weather", "arguments": json.dumps({"city": "上海"})}
    open_.script({"tool_calls": [{"name": "get_weather", "arguments": '{"city": 7}'}]})
    closed.script({"tool_calls": [GOOD_CALL, second]})
    chunks, calls = streamed(client)
    assert calls == {
        0: {"id": "call_0", "name": "get_weather", "arguments": GOOD_CALL["arguments"]},
        1: {"id": "call_1", "name": "get_weather", "arguments": second["arguments"]},
    }
    finishes = [c.finish_reason for k in chunks for c in k.choices if c.finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8
    assert {c.model for c in chunks} == {tier_name(closed, "closed")}


def test_a_tool_call_stream_without_finish_or_done_is_retried_not_passed_on(client, upstreams):
    """The upstream ends the body after two argument pieces: no finish_reason, no [DONE]. The
    half call must not reach the client; the retry's whole call does."""
    open_, closed = upstreams
    open_.script({"status": 500})
    closed.script({"tool_calls": [GOOD_CALL], "end_after": 4}, {"tool_calls": [GOOD_CALL]})
    _, calls = streamed(client)
    assert calls == {
        0: {"id": "call_0", "name": "get_weather", "arguments": GOOD_CALL["arguments"]}
    }
    assert len(closed.requests) == 2  # the cut stream, then its retry


def test_structured_output_with_parse_on_the_embedded_model(client):
    class City(BaseModel):
        name: str
        country: str

    completion = client.chat.completions.parse(
        model="openparity-hybrid",
        messages=[{"role": "user", "content": "Give the capital of France as JSON."}],
        response_format=City,
        max_tokens=60,
        temperature=0,
    )
    assert completion.model == "local:smollm2-135m"
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, City) and parsed.name


def test_several_choices_come_back(client, upstreams):
    open_, _ = upstreams
    completion = client.chat.completions.create(
        model="openparity-hybrid", messages=[{"role": "user", "content": "hi"}], n=3
    )
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert {c.message.content for c in completion.choices} == {"open text"}
    assert open_.requests[-1]["body"]["n"] == 3
    assert attempts(completion)[0] == (0, "skipped", "unsupported")


def test_unknown_fields_travel_both_ways(client, upstreams):
    open_, _ = upstreams
    extra = {"system_fingerprint": "fp_stub", "service_tier": "flex", "vendor": {"区域": "cn"}}
    message_extra = {"reasoning_content": "思考", "annotations": []}
    open_.script({"extra": extra, "message_extra": message_extra, "text": "done"})
    raw = client.chat.completions.with_raw_response.create(
        model=tier_name(open_, "open"),
        messages=[{"role": "user", "content": "hi"}],
        user="u-1",
        seed=7,
        stop=["\n\n"],
        metadata={"team": "a"},
        extra_body={"vendor_knob": {"深度": 2}, "top_k": 5},
    )
    body = json.loads(raw.http_response.text)
    for key, value in extra.items():
        assert body[key] == value
    assert body["choices"][0]["message"]["reasoning_content"] == "思考"
    sent = open_.requests[-1]["body"]
    assert sent["vendor_knob"] == {"深度": 2} and sent["top_k"] == 5
    assert (sent["user"], sent["seed"], sent["stop"], sent["metadata"]) == (
        "u-1",
        7,
        ["\n\n"],
        {"team": "a"},
    )


def test_unknown_fields_survive_a_stream(client, upstreams):
    open_, _ = upstreams
    open_.script({"extra": {"system_fingerprint": "fp_s"}, "message_extra": {"x_note": "n"}})
    with client.chat.completions.with_streaming_response.create(
        model=tier_name(open_, "open"), messages=[{"role": "user", "content": "hi"}], stream=True
    ) as response:
        events = [
            json.loads(line[6:])
            for line in response.iter_lines()
            if line.startswith("data: ") and line != "data: [DONE]"
        ]
    assert {e["system_fingerprint"] for e in events} == {"fp_s"}
    assert events[0]["choices"][0]["delta"]["x_note"] == "n"
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events) == "open text"


def test_logprobs_reach_the_client_only_when_it_asks(client, upstreams):
    open_, _ = upstreams
    tokens = [{"token": "ok", "logprob": -0.5, "top_logprobs": [{"token": "ok", "logprob": -0.5}]}]
    step = {"text": "ok", "choice_extra": {"logprobs": {"content": tokens}}}
    open_.script(step, step)
    asked = client.chat.completions.create(
        model=tier_name(open_, "open"),
        messages=[{"role": "user", "content": "hi"}],
        logprobs=True,
        top_logprobs=1,
    )
    assert asked.choices[0].logprobs.content[0].logprob == -0.5
    plain = client.chat.completions.create(
        model=tier_name(open_, "open"), messages=[{"role": "user", "content": "hi"}]
    )
    assert plain.choices[0].logprobs is None


def test_embeddings_pass_through_and_fall_back(client, upstreams):
    open_, closed = upstreams
    result = client.embeddings.create(model="openparity-hybrid", input=["hello", "你好"])
    assert [len(d.embedding) for d in result.data] == [8, 8]
    assert result.data[0].embedding != result.data[1].embedding
    assert open_.requests[-1]["path"].endswith("/embeddings")
    open_.script({"status": 500})
    again = client.embeddings.create(model="openparity-hybrid", input=["hello", "你好"])
    assert again.data[0].embedding == result.data[0].embedding  # the same vectors, from closed
    assert again.model == tier_name(closed, "closed")


def test_models_lists_the_gateway_and_each_tier(client, upstreams):
    open_, closed = upstreams
    ids = [m.id for m in client.models.list()]
    assert ids == [
        "openparity-hybrid",
        "local:smollm2-135m",
        tier_name(open_, "open"),
        tier_name(closed, "closed"),
    ]


def test_a_pinned_tier_answers_alone_and_an_unknown_model_is_a_404(client, upstreams):
    open_, closed = upstreams
    completion = client.chat.completions.create(
        model=tier_name(closed, "closed"), messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "closed text"
    assert attempts(completion) == [(2, "ok", "")]
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model="gpt-imaginary", messages=[{"role": "user", "content": "hi"}]
        )
    assert "GET /v1/models" in caught.value.body["message"]
    assert open_.requests == []


def test_a_forwarded_request_is_one_ledger_row(client, gateway, upstreams):
    open_, _ = upstreams
    raw = client.embeddings.with_raw_response.create(model="openparity-hybrid", input="账本")
    request_id = raw.headers["x-openparity-request-id"]
    ledger = gateway[2].parent / "ledger.sqlite"
    deadline = time.monotonic() + 20
    while True:  # the ledger writes in batches
        with contextlib.closing(sqlite3.connect(ledger)) as db:
            row = db.execute(
                "SELECT status, answered_by, prompt_tokens FROM requests WHERE request_id = ?",
                (request_id,),
            ).fetchone()
        if row or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert row == (200, tier_name(open_, "open"), 1)


def test_image_parts_skip_the_text_only_tier_and_reach_the_upstream_intact(client, upstreams):
    open_, _ = upstreams
    content = [
        {"type": "text", "text": "这张图里有什么？"},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
        },
    ]
    completion = client.chat.completions.create(
        model="openparity-hybrid", messages=[{"role": "user", "content": content}]
    )
    assert completion.choices[0].message.content == "open text"
    assert attempts(completion)[0] == (0, "skipped", "unsupported")
    assert open_.requests[-1]["body"]["messages"][0]["content"] == content
