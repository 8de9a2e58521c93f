"""The gateway against hostile clients, with the real `openai` client and a real `openparity
serve`: a client's malformed request is that client's 400 and never opens a breaker for
everyone else; parameters the client did not send are not invented; bodies nested 100,000
deep or holding NaN are a 400 with an OpenAI-style error, never a traceback."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest

from tests.route.gateway import post_body, running_gateway, stub_pair

UPSTREAM_400 = {
    "status": 400,
    "body": {
        "error": {
            "message": "Invalid 'logit_bias': keys must be token ids.",
            "type": "invalid_request_error",
            "param": "logit_bias",
            "code": "invalid_value",
        }
    },
}
CONTEXT_400 = {
    "status": 400,
    "body": {
        "error": {
            "message": "This model's maximum context length is 8192 tokens.",
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
        }
    },
}
HELLO = [{"role": "user", "content": "你好"}]


@pytest.fixture(scope="module")
def upstreams():
    with stub_pair("open answer", "closed answer") as pair:
        yield pair


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, upstreams):
    open_, closed = upstreams
    tier = {
        "checks": ["non_empty", "not_truncated"],
        "retries": 1,
        "breaker_failures": 2,
        "breaker_cooldown_s": 60,
    }
    config = {
        "tiers": [
            {"model": f"openai:open@{open_.base_url}", **tier},
            {"model": f"openai:closed@{closed.base_url}", **tier},
        ]
    }
    with running_gateway(tmp_path_factory.mktemp("hostile"), config) as running:
        yield running


@pytest.fixture
def client(gateway, upstreams):
    for stub in upstreams:
        stub.requests.clear()
    base_url, key, _ = gateway
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)


def health(gateway) -> dict:
    with urllib.request.urlopen(gateway[0].removesuffix("/v1") + "/health") as answer:
        return json.loads(answer.read())


def post_raw(gateway, raw: bytes) -> tuple[int, bytes]:
    base_url, key, _ = gateway
    return post_body(base_url, key, raw)


@pytest.mark.parametrize(
    "params",
    [
        {"max_tokens": -1},
        {"max_tokens": 0},
        {"n": 0},
        {"temperature": 7},
        {"top_p": -0.5},
        {"temperature": "warm"},
    ],
)
def test_out_of_range_parameters_are_a_400_before_any_upstream_is_paid(
    client, gateway, upstreams, params
):
    for _ in range(6):  # more than breaker_failures
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="openparity-hybrid", messages=HELLO, **params)
        assert caught.value.body["param"] == next(iter(params))
    assert not upstreams[0].requests and not upstreams[1].requests
    answer = client.chat.completions.with_raw_response.create(
        model="openparity-hybrid", messages=HELLO
    )
    assert answer.headers["x-openparity-route"] == "direct"
    assert [t["breaker"] for t in health(gateway)["tiers"]] == ["closed", "closed"]


def test_an_upstream_400_is_passed_on_as_said_and_never_opens_a_breaker(client, gateway, upstreams):
    open_, closed = upstreams
    for _ in range(5):
        open_.script(UPSTREAM_400)
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="openparity-hybrid", messages=HELLO, logit_bias={"x": 1}
            )
        assert caught.value.body["message"] == UPSTREAM_400["body"]["error"]["message"]
        assert caught.value.body["param"] == "logit_bias"
        assert caught.value.response.headers["x-openparity-route"] == "rejected"
    assert len(open_.requests) == 5  # not retried on the same tier
    assert not closed.requests  # nor on the next one: the request, not the tier, was bad
    assert [t["consecutive_failures"] for t in health(gateway)["tiers"]] == [0, 0]
    answer = client.chat.completions.with_raw_response.create(
        model="openparity-hybrid", messages=HELLO
    )
    assert answer.headers["x-openparity-model"].startswith("openai:open@")


def test_a_prompt_too_long_for_one_tier_falls_back_without_counting_against_it(
    client, gateway, upstreams
):
    open_, closed = upstreams
    for _ in range(3):
        open_.script(CONTEXT_400)
        answer = client.chat.completions.with_raw_response.create(
            model="openparity-hybrid", messages=HELLO
        )
        assert answer.headers["x-openparity-route"] == "fallback"
        assert "open@" in answer.headers["x-openparity-fallback-reasons"]
    assert health(gateway)["tiers"][0]["breaker"] == "closed"
    open_.script(CONTEXT_400)
    closed.script(CONTEXT_400)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="openparity-hybrid", messages=HELLO)
    assert caught.value.body["code"] == "context_length_exceeded"


def test_parameters_the_client_did_not_send_are_not_sent_upstream(client, upstreams):
    client.chat.completions.create(model="openparity-hybrid", messages=HELLO)
    sent = upstreams[0].requests[-1]["body"]
    assert not {"max_tokens", "max_completion_tokens", "temperature", "top_p"} & set(sent)
    client.chat.completions.create(
        model="openparity-hybrid", messages=HELLO, max_tokens=9, temperature=0.3
    )
    sent = upstreams[0].requests[-1]["body"]
    assert sent["max_tokens"] == 9 and sent["temperature"] == 0.3 and "top_p" not in sent


def test_a_streamed_request_the_upstream_refuses_is_a_400_too(client, upstreams):
    upstreams[0].script(UPSTREAM_400)
    with pytest.raises(openai.BadRequestError, match="logit_bias"):
        list(
            client.chat.completions.create(
                model="openparity-hybrid", messages=HELLO, stream=True, logit_bias={"x": 1}
            )
        )
    assert not upstreams[1].requests


@pytest.mark.parametrize(
    "raw, says",
    [
        (b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested deeper"),
        (
            b'{"messages": [{"role": "user", "content": "hi"}], "x": '
            + b'{"a":' * 5000
            + b"1"
            + b"}" * 5000
            + b"}",
            "nested deeper",
        ),
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "NaN"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "top_p": -Infinity}', "Infinity"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"[1, 2]", "JSON object"),
    ],
)
def test_malformed_bodies_are_a_json_400(gateway, raw, says):
    status, body = post_raw(gateway, raw)
    assert status in (400, 413), body[:200]
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error"
    if status == 400:
        assert says in error["message"]
    assert "Traceback" not in body.decode("utf-8", "replace")


def test_a_lone_surrogate_in_a_message_is_answered(gateway, upstreams):
    raw = json.dumps({"messages": [{"role": "user", "content": "\ud800 hi"}]}).encode()
    status, body = post_raw(gateway, raw)
    assert status == 200, body[:300]
    json.loads(body)


def test_max_tokens_above_every_tiers_context_is_refused_up_front(tmp_path, upstreams):
    open_, closed = upstreams
    config = {
        "tiers": [
            {"model": f"openai:open@{open_.base_url}", "context_tokens": 8192},
            {"model": f"openai:closed@{closed.base_url}", "context_tokens": 128_000},
        ],
        "auth": {"required": False},
    }
    with running_gateway(tmp_path, config) as (base_url, key, _):
        client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="openparity-hybrid", messages=HELLO, max_tokens=200_000
            )
        assert caught.value.body["code"] == "context_length_exceeded"
        answer = client.chat.completions.create(
            model="openparity-hybrid", messages=HELLO, max_tokens=100_000
        )  # more than the open tier's context, within the closed one's
        assert answer.choices[0].message.content


@pytest.fixture(scope="module")
def streaming_gateway(tmp_path_factory, upstreams):
    """The open tier streams early (after one output) and checks tool calls."""
    open_, closed = upstreams
    config = {
        "tiers": [
            {
                "model": f"openai:open@{open_.base_url}",
                "checks": ["non_empty", "tool_call"],
                "precommit_tokens": 1,
                "retries": 0,
            },
            {"model": f"openai:closed@{closed.base_url}", "checks": ["non_empty"]},
        ]
    }
    with running_gateway(tmp_path_factory.mktemp("streaming"), config) as running:
        yield running


def streamed_parts(gateway) -> tuple[str, list[str], str | None]:
    """(text, names of the tool calls, the error) of one streamed request without tools."""
    base_url, key, _ = gateway
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)
    text, names, error = "", [], None
    try:
        for chunk in client.chat.completions.create(
            model="openparity-hybrid", messages=HELLO, stream=True
        ):
            for choice in chunk.choices:
                text += choice.delta.content or ""
                names += [c.function.name for c in choice.delta.tool_calls or () if c.function]
    except openai.APIError as exc:
        error = str(exc)
    return text, [n for n in names if n], error


def test_a_streamed_call_to_a_tool_never_offered_does_not_reach_the_client(
    streaming_gateway, upstreams
):
    open_, _ = upstreams
    open_.script({"tool_calls": [{"name": "wire_money", "arguments": '{"to": "eve"}'}]})
    text, names, error = streamed_parts(streaming_gateway)
    assert names == [] and error is None
    assert text == "closed answer"  # the next tier answered instead


def test_a_tool_call_after_streamed_text_is_held_back_when_it_fails_its_check(
    streaming_gateway, upstreams
):
    open_, _ = upstreams
    open_.script(
        {
            "tool_calls": [{"name": "wire_money", "arguments": "{}"}],
            "message_extra": {"content": "Sure, sending it now."},
        }
    )
    text, names, error = streamed_parts(streaming_gateway)
    assert text == "Sure, sending it now.open answer"  # committed before the call began
    assert names == []
    assert error is not None and "held back" in error


def test_naming_a_tier_directly_is_a_direct_route(gateway, upstreams):
    base_url, key, _ = gateway
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)
    closed_model = f"openai:closed@{upstreams[1].base_url}"
    answer = client.chat.completions.with_raw_response.create(model=closed_model, messages=HELLO)
    assert answer.headers["x-openparity-route"] == "direct"
    assert answer.headers["x-openparity-model"] == closed_model
