"""The HybridRouter in-process, over two scripted upstreams on loopback (fault injection)."""

from __future__ import annotations

import sqlite3
import time

import pytest

from openparity.models.types import ChatRequest
from openparity.route.cascade import HybridRouter
from openparity.route.config import GatewayConfig
from openparity.route.outcome import AllTiersFailedError, RouteResult, StreamBrokenError
from openparity.route.params import request_from_params
from openparity.testing.stub_server import StubServer


@pytest.fixture
def upstreams():
    with StubServer(text="open says four") as open_, StubServer(text="closed says 4") as closed:
        yield open_, closed


def router(upstreams, **open_tier) -> HybridRouter:
    open_, closed = upstreams
    first = {"model": f"openai:open@{open_.base_url}", "checks": ["non_empty", "language"]}
    return HybridRouter(
        GatewayConfig.model_validate(
            {
                "tiers": [
                    first | open_tier,
                    {"model": f"openai:closed@{closed.base_url}", "checks": ["non_empty"]},
                ]
            }
        )
    )


HELLO = [{"role": "user", "content": "hello"}]


async def test_first_tier_answers_directly(upstreams):
    async with router(upstreams) as hybrid:
        result = await hybrid.generate(HELLO, max_tokens=16)
    assert (result.text, result.route, result.tier) == ("open says four", "direct", 0)
    assert [a.outcome for a in result.attempts] == ["ok"]


async def test_5xx_is_retried_then_falls_back(upstreams):
    upstreams[0].script({"status": 500}, {"status": 503})
    async with router(upstreams, retries=1) as hybrid:
        result = await hybrid.generate(HELLO)
    assert result.route == "fallback" and result.text == "closed says 4"
    assert [a.reason for a in result.attempts] == ["http_5xx", "http_5xx", ""]


async def test_429_retry_after_is_honoured(upstreams):
    upstreams[0].script({"status": 429, "headers": {"Retry-After": "0.3"}})
    async with router(upstreams, retries=1) as hybrid:
        started = time.perf_counter()
        result = await hybrid.generate(HELLO)
        waited = time.perf_counter() - started
    assert result.route == "retried" and waited >= 0.3
    assert result.attempts[0].retry_after_s == pytest.approx(0.3)


async def test_long_retry_after_falls_back_now_and_holds_the_upstream(upstreams):
    upstreams[0].script({"status": 429, "headers": {"Retry-After": "30"}})
    async with router(upstreams, retries=3, max_retry_wait_s=1) as hybrid:
        result = await hybrid.generate(HELLO)
        assert result.route == "fallback"
        assert hybrid.tiers[0].breaker.state == "open"  # nobody else goes there for 30 s
        again = await hybrid.generate(HELLO)
    assert again.attempts[0].reason == "breaker_open"


async def test_failed_check_falls_back_with_its_reason(upstreams):
    async with router(upstreams) as hybrid:
        result = await hybrid.generate([{"role": "user", "content": "二加二等于几？"}])
    assert result.route == "fallback"
    assert result.attempts[0].reason == "check:language"
    assert "asked in Han" in result.attempts[0].detail


async def test_empty_and_malformed_answers_fall_back(upstreams):
    upstreams[0].script({"text": ""}, {"raw": "{nope"})
    async with router(upstreams, retries=0) as hybrid:
        empty = await hybrid.generate(HELLO)
        malformed = await hybrid.generate(HELLO)
    assert empty.attempts[0].reason == "empty"
    assert malformed.attempts[0].reason == "malformed"


async def test_breaker_opens_then_half_opens_after_cooldown(upstreams):
    upstreams[0].script(*[{"status": 500}] * 3)
    async with router(upstreams, retries=0, breaker_failures=3, breaker_cooldown_s=0.2) as hybrid:
        for _ in range(3):
            await hybrid.generate(HELLO)
        assert hybrid.tiers[0].breaker.state == "open"
        skipped = await hybrid.generate(HELLO)
        assert skipped.attempts[0].reason == "breaker_open"
        assert hybrid.health()["tiers"][0]["breaker"] == "open"
        time.sleep(0.25)
        probe = await hybrid.generate(HELLO)  # the half-open probe succeeds
        assert probe.route == "direct"
        assert hybrid.tiers[0].breaker.state == "closed"


async def test_every_tier_failing_raises_with_all_reasons(upstreams):
    upstreams[0].script({"status": 500})
    upstreams[1].script({"status": 401})
    async with router(upstreams, retries=0) as hybrid:
        with pytest.raises(AllTiersFailedError) as caught:
            await hybrid.generate(HELLO)
    assert "http_5xx" in caught.value.message and "auth" in caught.value.message
    assert caught.value.result.route == "failed"


async def collect(hybrid: HybridRouter, content: str = "hello") -> tuple[list[str], RouteResult]:
    request = ChatRequest.from_prompt(content)
    result = RouteResult(request)
    pieces = [p.text async for p in hybrid.stream(request, result) if p.text]
    return pieces, result


async def test_stream_holds_back_until_precommit_then_streams(upstreams):
    async with router(upstreams, precommit_tokens=2) as hybrid:
        pieces, result = await collect(hybrid)
    assert pieces == ["open", " says", " four"]
    assert result.route == "direct" and result.completion.text == "open says four"


async def test_stream_failure_before_commit_is_retried_then_falls_back_invisibly(upstreams):
    upstreams[0].script({"cut_after": 2})  # role + one word, then the connection drops
    async with router(upstreams, precommit_tokens=3) as hybrid:
        pieces, result = await collect(hybrid)
    assert "".join(pieces) == "open says four"  # the retry answered; the cut never showed
    assert [a.reason for a in result.attempts] == ["stream_cut", ""]
    upstreams[0].script({"cut_after": 2}, {"status": 503})
    async with router(upstreams, precommit_tokens=3) as hybrid:
        pieces, result = await collect(hybrid)
    assert "".join(pieces) == "closed says 4"
    assert [a.reason for a in result.attempts] == ["stream_cut", "http_5xx", ""]


async def test_a_stream_that_delivered_its_finish_reason_is_complete_without_done(upstreams):
    # events: role, "open", " says", " four", finish, usage, [DONE]
    upstreams[0].script({"end_after": 6}, {"end_after": 5})  # no [DONE]; then no usage either
    async with router(upstreams, precommit_tokens=1) as hybrid:
        for _ in range(2):
            pieces, result = await collect(hybrid)
            assert "".join(pieces) == "open says four"
            assert result.route == "direct" and [a.reason for a in result.attempts] == [""]


async def test_a_stream_that_ends_before_its_finish_reason_is_cut_and_falls_back(upstreams):
    upstreams[0].script({"end_after": 4}, {"end_after": 4})  # all words, a clean end, no finish
    async with router(upstreams, precommit_tokens=5) as hybrid:
        pieces, result = await collect(hybrid)
    assert "".join(pieces) == "closed says 4"
    assert [a.reason for a in result.attempts] == ["stream_cut", "stream_cut", ""]


async def test_first_token_timeout_falls_back(upstreams):
    upstreams[0].script({"first_token_delay_s": 2})
    async with router(upstreams, precommit_tokens=1, first_token_timeout_s=0.2) as hybrid:
        started = time.perf_counter()
        pieces, result = await collect(hybrid)
    assert time.perf_counter() - started < 1.5
    assert "".join(pieces) == "closed says 4"
    assert result.attempts[0].reason == "first_token_timeout"


async def test_prefix_check_failure_falls_back_before_anything_is_sent(upstreams):
    async with router(upstreams, precommit_tokens=2) as hybrid:
        pieces, result = await collect(hybrid, "你好，今天怎么样？")
    assert "".join(pieces) == "closed says 4"
    assert result.attempts[0].reason == "check:language"


async def test_stream_failure_after_commit_raises_stream_broken(upstreams):
    upstreams[0].script({"cut_after": 3})
    async with router(upstreams, precommit_tokens=1) as hybrid:
        request = ChatRequest.from_prompt("hello")
        result = RouteResult(request)
        received = []
        with pytest.raises(StreamBrokenError):
            async for piece in hybrid.stream(request, result):
                if piece.text:
                    received.append(piece.text)
    assert received[0] == "open"  # committed after one piece, then the upstream broke
    assert result.route == "broken" and result.attempts[-1].reason == "stream_cut"
    assert result.attempts[-1].completion_tokens >= len(received)  # sent pieces are costed


async def test_embedded_model_streams_through_the_router(upstreams):
    _, closed = upstreams
    config = GatewayConfig.model_validate(
        {
            "tiers": [
                {"model": "local:smollm2-135m", "checks": ["non_empty"], "precommit_tokens": 4},
                {"model": f"openai:closed@{closed.base_url}", "checks": ["non_empty"]},
            ]
        }
    )
    async with HybridRouter(config) as hybrid:
        request = ChatRequest.from_prompt("Say hello.", max_tokens=12)
        result = RouteResult(request)
        pieces = [p.text async for p in hybrid.stream(request, result) if p.text]
    assert len(pieces) > 1 and result.answered_by == "local:smollm2-135m"
    assert result.completion.completion_tokens == 12


def test_openai_parameters_become_a_chat_request():
    request = request_from_params(
        HELLO,
        {
            "model": "x",
            "max_completion_tokens": 7,
            "stop": "END",
            "stream": True,
            "response_format": {"type": "json_object"},
            "temperature": None,
        },
    )
    assert request.max_tokens == 7 and request.stop == ["END"]
    assert request.temperature is None and request.top_p is None  # not sent: not invented
    assert dict(request.extra) == {"response_format": {"type": "json_object"}}


@pytest.mark.parametrize(
    "params, param",
    [
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": 2.5}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"n": 0}, "n"),
        ({"n": -3}, "n"),
        ({"n": 129}, "n"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_p": float("inf")}, "top_p"),
        ({"top_logprobs": 21}, "top_logprobs"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"stop": [1, 2]}, "stop"),
        ({"stop": ""}, "stop"),
        ({"seed": 1.5}, "seed"),
        ({"presence_penalty": 3}, "presence_penalty"),
    ],
)
def test_parameters_the_api_would_refuse_are_the_clients_error(params, param):
    from openparity.route.params import ClientRequestError

    with pytest.raises(ClientRequestError) as raised:
        request_from_params(HELLO, params)
    assert raised.value.param == param


async def test_upstream_keys_never_reach_errors_or_the_ledger(upstreams, tmp_path, monkeypatch):
    from openparity.route.ledger import Ledger

    secret = "sk-upstream-secret-0123456789"
    monkeypatch.setenv("CLOSED_KEY", secret)
    models = tmp_path / "models.yaml"
    models.write_text(
        f"models:\n  closed: {{backend: openai, model: c, base_url: '{upstreams[1].base_url}',"
        " api_key_env: CLOSED_KEY}\n",
        encoding="utf-8",
    )
    upstreams[1].script({"status": 400, "body": {"error": {"message": f"bad key {secret}"}}})
    config = GatewayConfig.model_validate(
        {"models_file": str(models), "tiers": [{"model": "closed", "retries": 0}]}
    )
    async with HybridRouter(config) as hybrid:
        with pytest.raises(AllTiersFailedError) as caught:
            await hybrid.generate(HELLO)
    assert secret not in caught.value.one_line()
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.record(caught.value.result, status=502)
    ledger.close()
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    dump = "\n".join(db.iterdump())
    db.close()
    assert "[redacted]" in dump and secret not in dump
    assert upstreams[1].requests  # the key was sent upstream, where it belongs
