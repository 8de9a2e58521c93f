"""The route commands as a user runs them: keys, stats, calibrate errors, cost from the ledger."""

from __future__ import annotations

import json

from openparity.models.types import ChatRequest, Completion
from openparity.route.ledger import Ledger
from openparity.route.outcome import Attempt, RouteResult
from tests.cli import openparity

CONFIG = "tiers:\n  - model: local:smollm2-135m\n  - model: openai:gpt-4o\n"


def write_config(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG + f"ledger: {{path: {tmp_path / 'ledger.sqlite'}}}\n", "utf-8")
    return path


def fill_ledger(path, answered_by_tier: list[int]) -> None:
    ledger = Ledger(path)
    for tier in answered_by_tier:
        result = RouteResult(ChatRequest.from_prompt("你好"))
        if tier == 1:
            result.attempts.append(
                Attempt(0, "local:smollm2-135m", "check_failed", "check:language", "asked in Han")
            )
        result.attempts.append(Attempt(tier, ["local:smollm2-135m", "openai:gpt-4o"][tier]))
        result.completion = Completion("好", "stop", 5, 2, 0.1, "m", 0.0)
        result.tier, result.closed_cost_usd = tier, 0.001
        ledger.record(result, status=200)
    ledger.close()


def test_keys_add_list_revoke(tmp_path):
    config = write_config(tmp_path)
    added = openparity("route", "keys", "add", "team-a", "-c", str(config), "--rate", "5")
    assert added.returncode == 0 and added.stdout.strip().startswith("op-")
    again = openparity("route", "keys", "add", "team-a", "-c", str(config))
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    listed = json.loads(openparity("route", "keys", "list", "-c", str(config), "--json").stdout)
    assert [k["name"] for k in listed] == ["team-a"] and listed[0]["rate_per_s"] == 5
    assert openparity("route", "keys", "revoke", "team-a", "-c", str(config)).returncode == 0
    assert json.loads(openparity("route", "keys", "list", "-c", str(config), "--json").stdout) == []
    openparity("route", "keys", "add", "团队-b", "-c", str(config), "--budget-usd", "12.5")
    table = openparity("route", "keys", "list", "-c", str(config)).stdout
    assert "团队-b" in table and "$12.50" in table and "none" in table and "{" not in table


def test_stats_reads_the_ledger(tmp_path):
    config = write_config(tmp_path)
    fill_ledger(tmp_path / "ledger.sqlite", [0, 0, 0, 1])
    stats = json.loads(openparity("route", "stats", "-c", str(config), "--json").stdout)
    assert stats["requests"] == 4 and stats["open_share"] == 0.75
    assert stats["fallback_reasons"] == {"check:language": 1}
    assert stats["closed_cost_usd"] == 0.004


def test_cost_takes_the_open_share_the_gateway_measured(tmp_path):
    fill_ledger(tmp_path / "ledger.sqlite", [0, 1])
    cost = openparity(
        "cost",
        "--gpu-hourly",
        "2.5",
        "--throughput",
        "1500",
        "--requests",
        "1000000",
        "--open-share-from",
        str(tmp_path / "ledger.sqlite"),
        "--format",
        "json",
    )
    assert cost.returncode == 0, cost.stderr
    report = json.loads(cost.stdout)
    assert report["hybrid_open_share"] == 0.5
    assert report["hybrid_open_share_source"] == "measured on 2 gateway requests"


def test_clear_one_line_errors(tmp_path):
    config = write_config(tmp_path)
    missing = openparity("route", "stats", "-c", str(config))
    assert missing.returncode == 2 and "no gateway ledger" in missing.stderr
    unknown = openparity("route", "calibrate", "--run", "nope", "-c", str(config))
    assert unknown.returncode == 2 and "nope" in unknown.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers: []\n", encoding="utf-8")
    refused = openparity("serve", "-c", str(bad))
    assert refused.returncode == 2 and "tiers" in refused.stderr
    assert "Traceback" not in missing.stderr + unknown.stderr + refused.stderr


def test_serve_starts_without_an_upstream_key_and_serves_the_other_tiers(tmp_path):
    """No OPENAI_API_KEY: the closed tier is marked unavailable with one warning line and the
    open tier answers; a config whose every tier is unavailable is refused in one line."""
    import json
    import urllib.request

    import openai

    from openparity.models.local_server import free_port
    from tests.route.gateway import serving

    config = write_config(tmp_path)
    key = openparity("route", "keys", "add", "t", "-c", str(config)).stdout.strip()
    with serving(config, free_port()) as url:
        health = json.loads(urllib.request.urlopen(url.removesuffix("/v1") + "/health").read())
        assert health["status"] == "ok"
        assert "OPENAI_API_KEY" in health["tiers"][1]["unavailable"]
        client = openai.OpenAI(base_url=url, api_key=key, max_retries=0)
        answer = client.chat.completions.with_raw_response.create(
            model="openparity-hybrid", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert answer.headers["x-openparity-model"] == "local:smollm2-135m"
    log = (tmp_path / "gateway.log").read_text(encoding="utf-8").splitlines()
    warnings = [line for line in log if line.startswith("warning:")]
    assert len(warnings) == 1 and "OPENAI_API_KEY" in warnings[0]
    closed_only = tmp_path / "closed.yaml"
    closed_only.write_text(
        f"tiers:\n  - model: openai:gpt-4o\nledger: {{path: {tmp_path / 'ledger.sqlite'}}}\n",
        encoding="utf-8",
    )
    result = openparity("serve", "-c", str(closed_only), "--port", "1", timeout=60)
    assert result.returncode == 2 and "no tier can be used" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_on_a_taken_port_is_one_line(tmp_path):
    import socket

    path = tmp_path / "gateway.yaml"
    path.write_text(
        "tiers:\n  - model: local:smollm2-135m\nauth: {required: false}\n"
        f"ledger: {{path: {tmp_path / 'ledger.sqlite'}}}\n",
        encoding="utf-8",
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = openparity("serve", "-c", str(path), "--port", str(port), timeout=60)
    assert result.returncode == 2 and f"cannot serve on 127.0.0.1:{port}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
