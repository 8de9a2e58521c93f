"""Several gateway replicas, one state: two `openparity serve` processes (and one with
`--workers 2`) on one config, sharing a real redis-server and one ledger. A key's rate limit and
budget hold across replicas, a breaker opened on one is open on the other, a revoked key stops
working on every replica within the key ring's refresh time."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from openparity.models.local_server import free_port
from openparity.testing.servers import running_redis
from tests.cli import openparity
from tests.route.gateway import chat_status, priced_models_file, serving

PRICE = 100_000.0  # USD per million tokens: each answer (1 + 1 tokens) costs $0.2


@pytest.fixture(scope="module")
def stub():
    from openparity.testing.stub_server import StubServer

    with StubServer(text="four") as server:
        yield server


@pytest.fixture(scope="module")
def setup(tmp_path_factory, stub):
    """The config, the keys, Redis; replicas are started by the tests that need them."""
    directory = tmp_path_factory.mktemp("replicas")
    models = priced_models_file(directory, "upstream", stub.base_url, PRICE)
    with running_redis(directory) as (redis_url, _):
        config = {
            "models_file": str(models),
            "tiers": [
                {
                    "model": "upstream",
                    "checks": ["non_empty"],
                    "retries": 0,
                    "breaker_failures": 2,
                    "breaker_cooldown_s": 3,
                }
            ],
            "ledger": {"path": str(directory / "ledger.sqlite")},
            "shared_state": {"redis_url": redis_url},
        }
        path = directory / "gateway.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        keys = {}
        for name, args in {
            "limited": ["--rate", "2"],
            "budgeted": ["--budget-usd", "20"],
            "free": [],
            "doomed": [],
        }.items():
            added = openparity("route", "keys", "add", name, "-c", str(path), *args)
            assert added.returncode == 0, added.stderr
            keys[name] = added.stdout.strip()
        yield path, keys


@pytest.fixture(scope="module")
def replicas(setup):
    path, _ = setup
    with (
        serving(path, free_port(), log_name="a.log") as a,
        serving(path, free_port(), log_name="b.log") as b,
    ):
        yield a, b


def health(base_url: str) -> dict:
    url = base_url.removesuffix("/v1") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as error:  # 503: every breaker open
        return json.loads(error.read())


@pytest.mark.slow
def test_two_replicas_share_one_rate_limit(replicas, setup):
    _, keys = setup
    a, b = replicas
    started = time.monotonic()
    statuses = [
        (side, chat_status(url, keys["limited"]))
        for _ in range(6)
        for side, url in (("a", a), ("b", b))
    ]
    elapsed = time.monotonic() - started
    allowed = sum(status == 200 for _, status in statuses)
    # a token bucket of 2/s with a burst of 2, across both replicas together
    assert allowed <= 2 + 2 * elapsed, (statuses, elapsed)
    assert {side for side, status in statuses if status == 429} == {"a", "b"}
    assert {status for _, status in statuses} == {200, 429}


def test_a_budget_held_on_one_replica_is_held_on_the_other(replicas, setup, stub):
    """A call holds its maximum cost (a ~110-byte prompt bound + 4 tokens at $0.1 a token:
    about $11.4) against the $20 budget while it runs: the other replica cannot hold a second
    one until the first settles at its real cost ($0.2)."""
    _, keys = setup
    a, b = replicas
    stub.script({"delay_s": 1.5})
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(chat_status, a, keys["budgeted"])
        time.sleep(0.6)  # A's call is in flight, its maximum cost held in Redis
        assert chat_status(b, keys["budgeted"]) == 429
        assert slow.result() == 200
    time.sleep(0.3)  # the settlement reaches Redis just after the answer
    assert chat_status(b, keys["budgeted"]) == 200  # settled: $0.2 spent, room for a hold


def test_a_revoked_key_stops_on_every_replica(replicas, setup):
    path, keys = setup
    a, b = replicas
    assert chat_status(a, keys["doomed"]) == 200 and chat_status(b, keys["doomed"]) == 200
    revoked = openparity("route", "keys", "revoke", "doomed", "-c", str(path))
    assert revoked.returncode == 0, revoked.stderr
    started, refused = time.monotonic(), set()
    while refused != {"a", "b"} and time.monotonic() - started < 10:
        for side, url in (("a", a), ("b", b)):
            if chat_status(url, keys["doomed"]) == 401:
                refused.add(side)
        time.sleep(0.2)
    assert refused == {"a", "b"}
    assert time.monotonic() - started <= 5.0 + 2.0  # the key ring's refresh time, plus slack


@pytest.mark.slow
def test_a_breaker_opened_on_one_replica_is_open_on_the_other(replicas, setup, stub):
    _, keys = setup
    a, b = replicas
    open_on_both(a, b, keys["free"], stub)
    assert health(a)["tiers"][0]["breaker"] == "open"
    before = len(stub.requests)
    assert chat_status(b, keys["free"]) == 502  # refused by the breaker, the upstream never asked
    assert len(stub.requests) == before
    time.sleep(3.2)  # the cooldown: one probe goes through, succeeds, closes it everywhere
    assert chat_status(b, keys["free"]) == 200
    deadline = time.monotonic() + 2
    while health(a)["tiers"][0]["breaker"] != "closed":
        assert time.monotonic() < deadline, health(a)
        time.sleep(0.05)


def open_on_both(a, b, key, stub) -> None:
    """Two failures on `a` open the breaker; wait until `b` has it open too."""
    stub.script({"status": 500}, {"status": 500})
    assert [chat_status(a, key) for _ in range(2)] == [502, 502]
    deadline = time.monotonic() + 2
    while health(b)["tiers"][0]["breaker"] != "open":
        assert time.monotonic() < deadline, health(b)
        time.sleep(0.05)


@pytest.mark.slow
def test_after_the_cooldown_one_replica_alone_probes_the_upstream(replicas, setup, stub):
    _, keys = setup
    a, b = replicas
    open_on_both(a, b, keys["free"], stub)
    time.sleep(3.2)  # the cooldown is over on both replicas
    stub.script({"status": 500, "delay_s": 1.0})  # a slow failing probe; then healthy again
    before = len(stub.requests)
    with ThreadPoolExecutor(2) as pool:
        statuses = list(pool.map(lambda url: chat_status(url, keys["free"]), [a, b]))
    assert statuses == [502, 502]  # the probe failed; the other replica did not probe
    assert len(stub.requests) == before + 1
    time.sleep(3.2)  # reopened by the failed probe: after its cooldown, a probe closes it
    assert chat_status(b, keys["free"]) == 200
    deadline = time.monotonic() + 2
    while health(a)["tiers"][0]["breaker"] != "closed":
        assert time.monotonic() < deadline, health(a)
        time.sleep(0.05)


@pytest.mark.slow
def test_workers_share_the_state_too(setup):
    """`serve --workers 2`: two worker processes, each subscribed to the shared breaker channel
    (counted in Redis itself: which worker accepts a connection is the kernel's choice), and
    the key's rate holds over the port whichever worker answers."""
    import redis

    path, keys = setup
    shared = redis.Redis.from_url(yaml.safe_load(path.read_text())["shared_state"]["redis_url"])
    channel = "openparity:openparity-hybrid:breakers"

    def subscribers() -> int:
        return int(dict(shared.pubsub_numsub(channel)).get(channel.encode(), 0))

    before = subscribers()
    with serving(path, free_port(), "--workers", "2", log_name="workers.log") as url:
        deadline = time.monotonic() + 20
        while subscribers() < before + 2:
            assert time.monotonic() < deadline, (before, subscribers())
            time.sleep(0.1)
        with ThreadPoolExecutor(16) as pool:  # concurrent connections: both workers may answer
            replicas = set(pool.map(lambda _: health(url)["replica"], range(64)))
        assert 1 <= len(replicas) <= 2
        time.sleep(1.5)  # the limited key's bucket refills
        started = time.monotonic()
        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(lambda _: chat_status(url, keys["limited"]), range(12)))
        elapsed = time.monotonic() - started
    assert statuses.count(200) <= 2 + 2 * elapsed, statuses
    assert 429 in statuses


def test_several_workers_without_shared_state_is_refused(tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump({"tiers": [{"model": "local:smollm2-135m"}], "auth": {"required": False}}),
        encoding="utf-8",
    )
    result = openparity("serve", "-c", str(config), "--workers", "2", timeout=60)
    assert result.returncode != 0
    assert "needs shared_state.redis_url" in result.stderr


@pytest.mark.slow
def test_a_lost_redis_degrades_to_per_replica_state_and_keeps_answering(setup, tmp_path):
    path, keys = setup
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    with running_redis(tmp_path) as (redis_url, redis_process):
        config["shared_state"] = {"redis_url": redis_url}
        own = tmp_path / "gateway.yaml"
        own.write_text(yaml.safe_dump(config), encoding="utf-8")
        with serving(own, free_port(), log_name="degraded.log") as url:
            assert chat_status(url, keys["free"]) == 200
            redis_process.kill()
            redis_process.wait()
            assert chat_status(url, keys["free"]) == 200
            time.sleep(2.5)  # the limited key's own bucket, now per replica, refills
            assert [chat_status(url, keys["limited"]) for _ in range(4)].count(429) >= 1
    log = (tmp_path / "degraded.log").read_text()
    assert "limits and breakers are per replica until it is back" in log
