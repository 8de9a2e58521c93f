"""A hung database never holds up a request: with PostgreSQL (ledger and keys) or Redis
(shared limits) stopped by SIGSTOP, requests and /health answer within a short bound, on the
last known keys and the replica's own limiter; when the store is back no ledger row is lost."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
import yaml

from openparity.models.local_server import free_port
from openparity.testing.servers import frozen, running_postgres, running_redis
from tests.cli import openparity
from tests.route.gateway import chat_status, serving


@pytest.fixture(scope="module")
def stub():
    from openparity.testing.stub_server import StubServer

    with StubServer(text="四") as server:
        yield server


def timed(call) -> tuple[float, object]:
    started = time.monotonic()
    value = call()
    return time.monotonic() - started, value


def write_config(directory, stub, **sections) -> tuple:
    path = directory / "gateway.yaml"
    config = {
        "tiers": [{"model": f"openai:m@{stub.base_url}", "checks": ["non_empty"]}],
        "auth": {"keys_refresh_s": 0.5},
        **sections,
    }
    config.setdefault("ledger", {"path": str(directory / "ledger.sqlite")})
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    added = openparity("route", "keys", "add", "team", "-c", str(path), "--rate", "1000")
    assert added.returncode == 0, added.stderr
    return path, added.stdout.strip()


@pytest.mark.slow
def test_a_hung_postgres_holds_up_no_request_and_loses_no_row(tmp_path, stub):
    with running_postgres() as postgres:
        path, key = write_config(tmp_path, stub, ledger={"url": postgres.url})
        with serving(path, free_port()) as url:
            root = url.removesuffix("/v1")
            assert chat_status(url, key) == 200
            with frozen(postgres.process.pid):
                time.sleep(0.6)  # past the key refresh interval: the next request triggers one
                slowest = max(timed(lambda: chat_status(url, key))[0] for _ in range(8))
                health_s, _ = timed(lambda: urllib.request.urlopen(root + "/health").read())
                time.sleep(2.5)
                statuses = [chat_status(url, key) for _ in range(4)]
            assert slowest < 1.0 and health_s < 0.5
            assert statuses == [200] * 4
            deadline = time.monotonic() + 20
            while postgres.count("requests") < 13 and time.monotonic() < deadline:
                time.sleep(0.2)
        assert postgres.count("requests") == 13
    log = (tmp_path / "gateway.log").read_text(encoding="utf-8")
    assert "slow or away" in log and "re-read from" in log  # said once, and when it was back


@pytest.mark.slow
def test_a_hung_redis_adds_at_most_its_bound_to_a_request(tmp_path, stub):
    with running_redis(tmp_path) as (redis_url, redis):
        path, key = write_config(
            tmp_path, stub, shared_state={"redis_url": redis_url, "timeout_s": 0.2}
        )
        with serving(path, free_port()) as url:
            assert chat_status(url, key) == 200
            with frozen(redis.pid):
                times = [timed(lambda: chat_status(url, key)) for _ in range(6)]
            assert all(status == 200 for _, status in times)
            assert max(seconds for seconds, _ in times) < 0.8
            assert chat_status(url, key) == 200
            health = json.loads(urllib.request.urlopen(url.removesuffix("/v1") + "/health").read())
            assert health["status"] == "ok"
    log = (tmp_path / "gateway.log").read_text(encoding="utf-8")
    assert log.count("unavailable") == 1  # one line for the outage
