"""Secrets at the gateway, with a real `openparity serve`: the operator's OPENAI_API_KEY goes
only to OpenAI, never to a self-hosted tier; a tier URL with credentials works (Basic auth) and
its password is shown nowhere; /metrics and /health's details can need an admin key."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
import urllib.error
import urllib.request

import openai
import pytest

from openparity.models.spec import parse_spec
from tests.route.gateway import running_gateway

PASSWORD = "s3cret-pw-4242"
OPENAI_KEY = "sk-operator-openai-key-0123456789"
ADMIN_KEY = "admin-key-0123456789abcdef"
HELLO = [{"role": "user", "content": "你好"}]


@pytest.fixture(scope="module")
def upstream():
    from openparity.testing.stub_server import StubServer

    with StubServer(text="hello") as stub:
        yield stub


def get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_providers_key_never_goes_to_another_host(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    assert parse_spec("openai:qwen@http://10.0.0.5:8000/v1").api_key() is None
    assert parse_spec("openai:gpt-4o@https://api.openai.com/v1").api_key() == OPENAI_KEY
    assert parse_spec("openai:gpt-4o").api_key() == OPENAI_KEY


def test_a_self_hosted_tier_gets_no_key_from_the_gateways_environment(
    tmp_path, upstream, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)  # inherited by `openparity serve`
    config = {"tiers": [{"model": f"openai:m@{upstream.base_url}", "checks": ["non_empty"]}]}
    upstream.requests.clear()
    with running_gateway(tmp_path, config) as (base_url, key, _):
        client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)
        client.chat.completions.create(model="openparity-hybrid", messages=HELLO)
    assert upstream.requests and upstream.requests[-1]["authorization"] is None


def test_a_tier_url_with_credentials_works_and_its_password_is_shown_nowhere(
    tmp_path, upstream, monkeypatch
):
    monkeypatch.setenv("GW_ADMIN", ADMIN_KEY)
    with_login = upstream.base_url.replace("http://", f"http://admin:{PASSWORD}@")
    config = {
        "tiers": [{"model": f"openai:m@{with_login}", "checks": ["non_empty"], "retries": 0}],
        "auth": {"admin_key_env": "GW_ADMIN"},
    }
    upstream.requests.clear()
    with running_gateway(tmp_path, config) as (base_url, key, _):
        root = base_url.removesuffix("/v1")
        client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)
        answer = client.chat.completions.with_raw_response.create(
            model="openparity-hybrid", messages=HELLO
        )
        assert answer.parse().choices[0].message.content == "hello"
        shown = [answer.http_response.text, json.dumps(dict(answer.headers))]
        shown += [get(root + "/health", ADMIN_KEY)[1], get(root + "/metrics", ADMIN_KEY)[1]]
        shown.append(json.dumps(client.models.list().model_dump()))
        upstream.script({"status": 500, "body": {"error": {"message": f"bad login {PASSWORD}"}}})
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="openparity-hybrid", messages=HELLO)
        shown.append(json.dumps(caught.value.body))
        time.sleep(0.3)  # the ledger's batch
    sent = upstream.requests[0]["authorization"]
    assert sent == "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    shown.append("\n".join(db.iterdump()))
    db.close()
    shown.append((tmp_path / "gateway.log").read_text(encoding="utf-8"))
    assert "admin:***@" in shown[2]  # the tier is named, with its password masked
    for text in shown:
        assert PASSWORD not in text


def test_metrics_and_health_details_need_the_admin_key(tmp_path, upstream, monkeypatch):
    monkeypatch.setenv("GW_ADMIN", ADMIN_KEY)
    config = {
        "tiers": [{"model": f"openai:m@{upstream.base_url}", "checks": ["non_empty"]}],
        "auth": {"admin_key_env": "GW_ADMIN"},
    }
    with running_gateway(tmp_path, config) as (base_url, key, _):
        root = base_url.removesuffix("/v1")
        assert get(root + "/metrics")[0] == 401
        assert get(root + "/metrics", key)[0] == 401  # a client key is not the admin key
        status, text = get(root + "/metrics", ADMIN_KEY)
        assert status == 200 and "openparity_breaker_state" in text
        assert json.loads(get(root + "/health")[1]) == {"status": "ok"}
        assert "tiers" in json.loads(get(root + "/health", ADMIN_KEY)[1])


def test_a_short_admin_key_refuses_to_start_with_one_line(tmp_path, upstream, monkeypatch):
    from tests.cli import openparity

    monkeypatch.setenv("GW_ADMIN", "short")
    path = tmp_path / "gateway.yaml"
    path.write_text(
        json.dumps(
            {
                "tiers": [{"model": f"openai:m@{upstream.base_url}"}],
                "auth": {"admin_key_env": "GW_ADMIN", "required": False},
            }
        ),
        encoding="utf-8",
    )
    ran = openparity("serve", "-c", str(path), "--port", "9")
    assert ran.returncode != 0
    assert "shorter than 16 characters" in ran.stderr and "Traceback" not in ran.stderr
