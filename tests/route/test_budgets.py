"""Budgets and token limits hold under bursts, with real `openparity serve` processes, a real
redis-server and the ledger: 60 concurrent requests on a $0.001 key spend at most the budget
plus one call's maximum cost, in one process and across two replicas; after Redis loses its
data, spending is rebuilt from the ledger, not from one replica's memory; tokens per minute hold
across replicas."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from openparity.models.local_server import free_port
from openparity.testing.servers import running_redis
from tests.cli import openparity
from tests.route.gateway import post_body, priced_models_file, serving

PRICE = 2.0  # USD per million tokens, in and out
ANSWER = " ".join(["word"] * 50)  # 50 tokens out, 1 in: each answer costs $0.000102
BODY = json.dumps(
    {
        "model": "openparity-hybrid",
        "max_tokens": 60,
        "messages": [{"role": "user", "content": "hi"}],
    }
).encode()
MAX_CALL_COST = (len(BODY) + 60) * PRICE / 1e6  # the hold of one call: about $0.00033
ANSWER_COST = 51 * PRICE / 1e6


@pytest.fixture(scope="module")
def stub():
    from openparity.testing.stub_server import StubServer

    with StubServer(text=ANSWER) as server:
        yield server


def write_config(directory, stub, redis_url=None):
    models = priced_models_file(directory, "priced", stub.base_url, PRICE)
    config = {
        "models_file": str(models),
        "tiers": [{"model": "priced", "checks": ["non_empty"], "retries": 0}],
        "ledger": {"path": str(directory / "ledger.sqlite")},
    }
    if redis_url:
        config["shared_state"] = {"redis_url": redis_url}
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def add_key(path, name, *args) -> str:
    added = openparity("route", "keys", "add", name, "-c", str(path), *args)
    assert added.returncode == 0, added.stderr
    return added.stdout.strip()


def post(base_url: str, key: str) -> int:
    return post_body(base_url, key, BODY)[0]


def burst(urls: list[str], key: str, n: int = 60) -> list[int]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda i: post(urls[i % len(urls)], key), range(n)))


def spent(directory, key_name: str) -> float:
    time.sleep(0.5)  # the ledger writes in batches
    db = sqlite3.connect(directory / "ledger.sqlite")
    (total,) = db.execute(
        "SELECT COALESCE(SUM(r.cost_usd), 0) FROM requests r JOIN api_keys k"
        " ON r.key_id = k.key_id WHERE k.name = ?",
        (key_name,),
    ).fetchone()
    db.close()
    return total


def test_a_burst_on_one_worker_spends_at_most_the_budget(tmp_path, stub):
    path = write_config(tmp_path, stub)
    key = add_key(path, "small", "--budget-usd", "0.001")
    stub.script(*[{"delay_s": 0.2}] * 60)  # calls overlap: every one in flight at once
    with serving(path, free_port()) as url:
        statuses = burst([url], key)
    assert {200, 429} == set(statuses)
    total = spent(tmp_path, "small")
    assert 0 < total <= 0.001 + MAX_CALL_COST
    assert statuses.count(200) * ANSWER_COST == pytest.approx(total)


@pytest.mark.slow
def test_a_burst_across_two_replicas_spends_at_most_the_budget(tmp_path, stub):
    with running_redis(tmp_path) as (redis_url, _):
        path = write_config(tmp_path, stub, redis_url)
        key = add_key(path, "shared-small", "--budget-usd", "0.001")
        stub.script(*[{"delay_s": 0.2}] * 60)
        with (
            serving(path, free_port(), log_name="a.log") as a,
            serving(path, free_port(), log_name="b.log") as b,
        ):
            statuses = burst([a, b], key)
    assert {200, 429} == set(statuses)
    assert 0 < spent(tmp_path, "shared-small") <= 0.001 + MAX_CALL_COST


@pytest.mark.slow
def test_after_redis_loses_its_data_spending_is_rebuilt_from_the_ledger(tmp_path, stub):
    import redis

    with running_redis(tmp_path) as (redis_url, _):
        path = write_config(tmp_path, stub, redis_url)
        key = add_key(path, "rebuilt", "--budget-usd", "0.002")
        with (
            serving(path, free_port(), log_name="a.log") as a,
            serving(path, free_port(), log_name="b.log") as b,
        ):
            statuses = [post(a, key) for _ in range(10)]  # A alone spends
            assert statuses.count(200) >= 1
            redis.Redis.from_url(redis_url).flushall()  # Redis comes back empty
            time.sleep(0.3)
            more = [post(b, key) for _ in range(200)]  # B's own memory has spent nothing
            assert more[-1] == 429
    assert spent(tmp_path, "rebuilt") <= 0.002 + MAX_CALL_COST


@pytest.mark.slow
def test_tokens_per_minute_hold_across_replicas(tmp_path, stub):
    with running_redis(tmp_path) as (redis_url, _):
        path = write_config(tmp_path, stub, redis_url)
        # a request is let in against its estimate (prompt bound + max_tokens) and charged
        # its real tokens (51) when it ends: room for three, then the bucket is short
        estimate = len(BODY) + 60
        key = add_key(path, "wordy", "--tpm", str(estimate + 2 * 51))
        with (
            serving(path, free_port(), log_name="a.log") as a,
            serving(path, free_port(), log_name="b.log") as b,
        ):
            statuses = []
            for url in (a, b, a, b, a, b):
                statuses.append(post(url, key))
                time.sleep(0.1)  # its settlement reaches Redis just after the answer
    assert statuses[:3] == [200] * 3 and statuses[3:] == [429] * 3


def test_a_request_larger_than_the_tokens_per_minute_says_it_can_never_fit(tmp_path, stub):
    path = write_config(tmp_path, stub)
    key = add_key(path, "tiny", "--tpm", "10")
    with serving(path, free_port()) as url:
        request = urllib.request.Request(
            url + "/chat/completions",
            BODY,
            {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 429
    assert "can never fit" in json.loads(caught.value.read())["error"]["message"]


def test_keys_list_shows_a_small_budget_as_it_is(tmp_path, stub):
    path = write_config(tmp_path, stub)
    add_key(path, "penny", "--budget-usd", "0.001", "--tpm", "5000")
    listed = openparity("route", "keys", "list", "-c", str(path))
    assert "$0.001" in listed.stdout and "5,000/min" in listed.stdout
