"""The ledger and the key store in a real PostgreSQL server (`ledger.url`): the gateway writes
the same rows as with SQLite, `route stats` and `cost --open-share-from` read them, nothing is
lost on shutdown, and rows recorded while the server is down are written when it is back."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from openparity.models.local_server import free_port
from openparity.testing.servers import running_postgres
from tests.cli import CLI, openparity
from tests.route.gateway import chat_status, serving


@pytest.fixture(scope="module")
def stub():
    from openparity.testing.stub_server import StubServer

    with StubServer(text="四") as server:
        yield server


@pytest.fixture
def postgres():
    with running_postgres() as server:
        yield server


def write_config(directory, stub, url) -> tuple:
    path = directory / "gateway.yaml"
    config = {
        "tiers": [
            {"model": f"openai:open@{stub.base_url}", "checks": ["non_empty"], "retries": 0},
            {"model": f"openai:closed@{stub.base_url}/", "checks": ["non_empty"], "retries": 0},
        ],
        "ledger": {"url": url, "store_prompts": True},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    added = openparity("route", "keys", "add", "team-pg", "-c", str(path))
    assert added.returncode == 0, added.stderr
    return path, added.stdout.strip()


@pytest.mark.slow
def test_the_gateway_writes_its_ledger_and_reads_its_keys_in_postgres(tmp_path, stub, postgres):
    path, key = write_config(tmp_path, stub, postgres.url)
    listed = openparity("route", "keys", "list", "-c", str(path), "--json")
    assert [k["name"] for k in json.loads(listed.stdout)] == ["team-pg"]
    assert not (tmp_path / ".openparity").exists()  # nothing went to a SQLite file
    stub.script({"status": 500})  # the first request falls back to the second tier
    with serving(path, free_port()) as url:
        assert [chat_status(url, key) for _ in range(5)] == [200] * 5
    assert postgres.count("requests") == 5 and postgres.count("attempts") == 6
    stats = openparity("route", "stats", "--ledger", postgres.url, "--json")
    assert stats.returncode == 0, stats.stderr
    summary = json.loads(stats.stdout)
    assert (summary["requests"], summary["answered"], summary["open_share"]) == (5, 5, 0.8)
    assert summary["fallback_reasons"] == {"http_5xx": 1}
    cost = openparity(
        "cost",
        "--closed",
        "openai:gpt-4o",
        "--gpu-hourly",
        "2",
        "--throughput",
        "1000",
        "--requests",
        "1000",
        "--open-share-from",
        postgres.url,
        "--format",
        "json",
    )
    assert cost.returncode == 0, cost.stderr
    assert "measured on 5 gateway requests" in cost.stdout
    import psycopg

    with psycopg.connect(postgres.url) as conn:
        prompt = conn.execute("SELECT prompt FROM requests LIMIT 1").fetchone()[0]
    assert "二加二" in prompt  # Chinese text stored intact


def test_no_row_is_lost_on_shutdown(tmp_path, stub, postgres):
    path, key = write_config(tmp_path, stub, postgres.url)
    port = free_port()
    log = (tmp_path / "gateway.log").open("wb")
    process = subprocess.Popen(
        [*CLI, "serve", "-c", str(path), "--port", str(port)], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=1).read()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: chat_status(url, key), range(200)))
    process.send_signal(signal.SIGTERM)  # at once, rows still queued
    assert process.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises it when done
    log.close()
    assert "Traceback" not in (tmp_path / "gateway.log").read_text()
    assert statuses == [200] * 200
    assert postgres.count("requests") == 200


@pytest.mark.slow
def test_rows_recorded_while_postgres_is_down_are_written_when_it_is_back(tmp_path, stub, postgres):
    path, key = write_config(tmp_path, stub, postgres.url)
    with serving(path, free_port()) as url:
        assert chat_status(url, key) == 200
        postgres.stop()
        assert [chat_status(url, key) for _ in range(3)] == [200] * 3  # answers go on
        time.sleep(1.5)
        postgres.start()
        deadline = time.monotonic() + 20
        while postgres.count("requests") < 4:
            assert time.monotonic() < deadline, "the queued rows never reached postgres"
            time.sleep(0.3)
    assert postgres.count("requests") == 4
    assert "cannot be written" in (tmp_path / "gateway.log").read_text()


def test_a_dead_postgres_url_is_one_clear_line(tmp_path, stub):
    url = f"postgresql://openparity@127.0.0.1:{free_port()}/postgres"
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump({"tiers": [{"model": f"openai:x@{stub.base_url}"}], "ledger": {"url": url}}),
        encoding="utf-8",
    )
    result = openparity("route", "keys", "add", "a", "-c", str(config), timeout=60)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert (
        "cannot use the PostgreSQL ledger at" in result.stderr and "Traceback" not in result.stderr
    )
    assert len(lines) <= 3, result.stderr
