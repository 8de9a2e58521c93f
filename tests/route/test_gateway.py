"""The gateway end to end: `openparity serve` in a subprocess, the real `openai` client, the
embedded llama.cpp model as the open tier and a fault-injecting stub as the closed tier."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request

import openai
import pytest

from tests.route.gateway import running_gateway

CLOSED_TEXT = "答案是四。"


@pytest.fixture(scope="module")
def closed_stub():
    from openparity.testing.stub_server import StubServer

    with StubServer(text=CLOSED_TEXT) as stub:
        yield stub


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, closed_stub):
    """Open tier: SmolLM2 with checks and its own default of 3 tokens: a request that sets no
    max_tokens is cut by the tier's limit, not the client's, and fails `not_truncated`, which
    makes fallbacks deterministic. Closed tier: the stub."""
    directory = tmp_path_factory.mktemp("gateway")
    config = {
        "tiers": [
            {
                "model": "local:smollm2-135m",
                "defaults": {"max_tokens": 3, "temperature": 0},
                "checks": ["non_empty", "not_truncated", "refusal", "json", "language"],
                "precommit_tokens": "all",
            },
            {
                "model": f"openai:closed@{closed_stub.base_url}",
                "checks": ["non_empty"],
                "retries": 1,
                "first_token_timeout_s": 0.5,
                "precommit_tokens": 2,
                "breaker_failures": 1000,
            },
        ],
        "max_request_bytes": 4096,
    }
    with running_gateway(directory, config) as (base_url, key, path):
        yield base_url, key, path


def client(gateway, key=None) -> openai.OpenAI:
    base_url, default_key, _ = gateway
    return openai.OpenAI(base_url=base_url, api_key=key or default_key, max_retries=0)


def ask(gateway, content="What is 2 + 2?", **kwargs):
    return client(gateway).chat.completions.with_raw_response.create(
        model="openparity-hybrid", messages=[{"role": "user", "content": content}], **kwargs
    )


def test_open_model_answers_when_its_checks_pass(gateway):
    raw = ask(gateway, max_tokens=200)
    completion = raw.parse()
    assert raw.headers["x-openparity-model"] == "local:smollm2-135m"
    assert raw.headers["x-openparity-route"] == "direct"
    assert completion.choices[0].message.content
    assert completion.model == "local:smollm2-135m"
    assert completion.usage.completion_tokens > 0


def test_failed_check_falls_back_to_the_closed_model(gateway, closed_stub):
    raw = ask(gateway, "你好，请介绍一下你自己。")  # the tier's 3 tokens: truncated
    assert raw.headers["x-openparity-route"] == "fallback"
    assert raw.headers["x-openparity-model"].startswith("openai:closed@")
    assert "check:not_truncated" in raw.headers["x-openparity-fallback-reasons"]
    body = json.loads(raw.http_response.text)
    assert body["choices"][0]["message"]["content"] == CLOSED_TEXT
    reasons = [a["reason"] for a in body["openparity"]["attempts"]]
    assert reasons == ["check:not_truncated", ""]


@pytest.mark.parametrize(
    "faults, reason",
    [
        ([{"status": 500}], "http_5xx"),
        ([{"status": 429, "headers": {"Retry-After": "0.1"}}], "http_429"),
        ([{"raw": "{not json"}], "malformed"),
        ([{"text": ""}], "empty"),
    ],
)
def test_closed_tier_faults_are_retried(gateway, closed_stub, faults, reason):
    closed_stub.script(*faults)
    raw = ask(gateway)
    body = json.loads(raw.http_response.text)
    assert body["choices"][0]["message"]["content"] == CLOSED_TEXT
    closed_attempts = [a for a in body["openparity"]["attempts"] if a["tier"] == 1]
    assert [a["reason"] for a in closed_attempts] == [reason, ""]


def test_every_tier_failing_gives_a_well_formed_error(gateway, closed_stub):
    closed_stub.script({"text": ""}, {"status": 500})  # the try and its retry
    with pytest.raises(openai.APIStatusError) as caught:
        ask(gateway)
    assert caught.value.status_code == 502
    error = caught.value.body
    assert error["code"] == "all_tiers_failed"
    assert "check:not_truncated" in error["message"]
    assert "empty" in error["message"] and "http_5xx" in error["message"]


def test_streaming_falls_back_before_commit_and_streams_the_answer(gateway, closed_stub):
    stream = client(gateway).chat.completions.create(
        model="openparity-hybrid",
        messages=[{"role": "user", "content": "Tell me a story."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == CLOSED_TEXT
    assert chunks[-1].usage is not None


def test_slow_first_token_is_a_failure_not_a_hang(gateway, closed_stub):
    closed_stub.script({"first_token_delay_s": 2.0})
    with pytest.raises(openai.APIStatusError) as caught:  # the closed tier is the last one
        list(
            client(gateway).chat.completions.create(
                model="openparity-hybrid",
                messages=[{"role": "user", "content": "Tell me a story."}],
                stream=True,
            )
        )
    assert caught.value.status_code == 502
    assert "first_token_timeout" in caught.value.body["message"]


def test_stream_cut_after_commit_is_an_error_event_not_a_silent_cut(gateway, closed_stub):
    closed_stub.script({"cut_after": 3})  # role + 2 pieces: committed at 2 pieces, then cut
    closed_stub.text = "one two three four five"
    try:
        stream = client(gateway).chat.completions.create(
            model="openparity-hybrid",
            messages=[{"role": "user", "content": "Tell me a story."}],
            stream=True,
        )
        with pytest.raises(openai.APIError, match="broke"):
            list(stream)
    finally:
        closed_stub.text = CLOSED_TEXT


def stream_text(gateway, content: str) -> str:
    stream = client(gateway).chat.completions.create(
        model="openparity-hybrid",
        messages=[{"role": "user", "content": content}],
        stream=True,
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_fallback_stream_that_ends_after_its_finish_reason_without_done_is_delivered(
    gateway, closed_stub
):
    # closed events: role, the answer, finish, usage, [DONE]
    closed_stub.script({"end_after": 4}, {"end_after": 3})  # no [DONE]; then no usage either
    assert stream_text(gateway, "Tell me a story.") == CLOSED_TEXT
    assert stream_text(gateway, "Tell me a story.") == CLOSED_TEXT
    raw = ask(gateway, "Tell me a story.")  # not streamed: the same answer
    assert json.loads(raw.http_response.text)["choices"][0]["message"]["content"] == CLOSED_TEXT


def test_fallback_stream_that_ends_without_a_finish_reason_is_a_cut(gateway, closed_stub):
    closed_stub.script({"end_after": 2}, {"end_after": 2})  # role + answer, then a clean end
    with pytest.raises(openai.APIStatusError) as caught:
        stream_text(gateway, "Tell me a story.")
    assert caught.value.status_code == 502
    assert "stream_cut" in caught.value.body["message"]


def test_requests_without_a_valid_key_get_401(gateway):
    with pytest.raises(openai.AuthenticationError):
        client(gateway, key="op-wrong").chat.completions.create(
            model="openparity-hybrid", messages=[{"role": "user", "content": "hi"}]
        )


def test_bad_requests_get_clear_openai_style_errors(gateway):
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client(gateway).chat.completions.create(
            model="gpt-5", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.APIStatusError) as caught:
        ask(gateway, "x" * 5000)
    assert caught.value.status_code == 413
    with pytest.raises(openai.BadRequestError, match="messages"):
        client(gateway).chat.completions.create(model="openparity-hybrid", messages=[])


def test_health_metrics_models_and_ledger(gateway):
    base_url, key, path = gateway
    ask(gateway)
    root = base_url.removesuffix("/v1")
    health = json.loads(urllib.request.urlopen(root + "/health").read())
    assert [t["breaker"] for t in health["tiers"]] == ["closed", "closed"]
    metrics = urllib.request.urlopen(root + "/metrics").read().decode()
    assert 'openparity_requests_total{route="fallback",status="200"}' in metrics
    assert "openparity_breaker_state" in metrics
    models = client(gateway).models.list()
    assert models.data[0].id == "openparity-hybrid"  # then each tier
    ledger = path.parent / "ledger.sqlite"
    import time

    time.sleep(0.3)  # the ledger writes in 50 ms batches
    db = sqlite3.connect(ledger)
    rows = db.execute("SELECT prompt, answer, key_id, cost_usd FROM requests").fetchall()
    attempts = db.execute("SELECT reason, detail FROM attempts").fetchall()
    dump = "\n".join(map(str, db.iterdump()))
    db.close()
    assert rows and all(r[0] is None and r[1] is None for r in rows)  # prompts not stored
    assert all(r[2] is not None for r in rows)
    assert any(reason == "check:not_truncated" for reason, _ in attempts)
    assert key not in dump  # only the key's hash is stored


def test_every_request_gets_one_access_log_line(gateway):
    _, _, path = gateway
    raw = ask(gateway)
    request_id = raw.headers["x-openparity-request-id"]
    deadline = time.monotonic() + 10  # the line is written once the answer is on its way
    while True:
        log = (path.parent / "gateway.log").read_text(encoding="utf-8")
        lines = [line for line in log.splitlines() if request_id in line]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    [line] = lines
    assert " 200 fallback model=openai:closed@" in line and "key=tester" in line
    assert "attempts=2" in line and "s $" in line
