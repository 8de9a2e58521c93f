"""The gateway under hostile clients and sick databases (`gateway_load.py --hostile`).

`openparity serve --workers 2` with shared state in a real redis-server and the ledger in a real
PostgreSQL; two scripted upstreams. Good traffic from three keys (one with a small budget) runs
twice at the same concurrency:
  clean      good traffic only
  hostile    the same, plus 10 % of requests from one key that are malformed or out of range
             (max_tokens -1, n 0, NaN, bodies 5,000 deep, unknown tools, broken JSON), while
             PostgreSQL is stopped with SIGSTOP for 10 s and Redis is restarted empty mid-run
Checks and prints: every good request answered, every breaker closed at the end, p99 of good
requests within 2x the clean run, ledger rows = routed requests, and the budgeted key's
spending at most its budget plus one call's maximum cost.

    python benchmarks/gateway_load.py --hostile [--seconds 30] [--concurrency 50]
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import aiohttp
from gateway_procs import OPENPARITY, percentile, start_gateway, start_stub

from openparity.route.ledger_db import LedgerDB
from openparity.testing.servers import frozen, running_postgres, running_redis

ADMIN_KEY = "bench-admin-key-0123456789abcdef"
BUDGET = 0.005  # USD, the budgeted key's: spent within the runs
GOOD = {
    "model": "openparity-hybrid",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "What is 2 + 2?"}],
}
PRICE_OUT = 10.0  # the closed tier's output price per million tokens


def hostile_bodies(rng: random.Random) -> bytes:
    choice = rng.randrange(7)
    if choice == 0:
        return json.dumps(GOOD | {"max_tokens": -1}).encode()
    if choice == 1:
        return json.dumps(GOOD | {"n": 0}).encode()
    if choice == 2:
        return json.dumps(GOOD).replace('"max_tokens": 16', '"temperature": NaN').encode()
    if choice == 3:
        return b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    if choice == 4:
        return json.dumps(GOOD | {"tools": "everything"}).encode()
    if choice == 5:
        return json.dumps(GOOD | {"model": "no-such-model"}).encode()
    return json.dumps(GOOD).encode()[: rng.randrange(5, 40)]


async def drive(
    url: str, keys: dict[str, str], seconds: float, concurrency: int, hostile: bool
) -> list[tuple[str, int, float, bool]]:
    """(key name, status, latency, routed) for every request sent within `seconds`."""
    rng = random.Random(7)
    results: list[tuple[str, int, float, bool]] = []
    stop = time.monotonic() + seconds
    good_names = [n for n in keys if n != "hostile"]

    async def worker(session: aiohttp.ClientSession, index: int) -> None:
        while time.monotonic() < stop:
            if hostile and rng.random() < 0.1:
                name, body = "hostile", hostile_bodies(rng)
            else:
                name, body = good_names[index % len(good_names)], json.dumps(GOOD).encode()
            headers = {"Authorization": f"Bearer {keys[name]}", "Content-Type": "application/json"}
            started = time.perf_counter()
            try:
                async with session.post(
                    url + "/chat/completions", data=body, headers=headers
                ) as answer:
                    await answer.read()
                    routed = "x-openparity-request-id" in answer.headers
                    status = answer.status
            except aiohttp.ClientError:
                status, routed = 599, False
            results.append((name, status, time.perf_counter() - started, routed))

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session, i) for i in range(concurrency)))
    return results


def restart_redis(process: subprocess.Popen, port: int, directory: Path) -> subprocess.Popen:
    """Kill the Redis server and start an empty one on the same port."""
    process.kill()
    process.wait(10)
    fresh = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    time.sleep(0.5)
    return fresh


def main(seconds: float = 30.0, concurrency: int = 50) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_redis(Path(tmp)) as (redis_url, redis_process),
        running_postgres() as postgres,
    ):
        directory = Path(tmp)
        open_url, open_stub = start_stub()
        closed_url, closed_stub = start_stub()
        models = directory / "models.yaml"
        models.write_text(
            "models:\n"
            f"  open: {{backend: openai, model: open, base_url: '{open_url}',"
            " price: {input: 0.1, output: 0.2, source: benchmark}}\n"
            f"  closed: {{backend: openai, model: closed, base_url: '{closed_url}',"
            f" price: {{input: 2.5, output: {PRICE_OUT}, source: benchmark}}}}\n",
            encoding="utf-8",
        )
        tier = {
            "retries": 1,
            "max_concurrency": 64,
            "breaker_failures": 5,
            "breaker_cooldown_s": 30,
        }
        config = {
            "models_file": str(models),
            "tiers": [{"model": "open", **tier}, {"model": "closed", **tier}],
            "shared_state": {"redis_url": redis_url},
            "ledger": {"url": postgres.url},
            "auth": {"admin_key_env": "BENCH_ADMIN"},
        }
        os.environ["BENCH_ADMIN"] = ADMIN_KEY
        url, first_key, gateway = start_gateway(directory, config, workers=2, name="hostile")
        path = directory / "hostile.yaml"
        keys = {"good-1": first_key}
        for name, extra in (
            ("good-2", []),
            ("budgeted", ["--budget-usd", str(BUDGET)]),
            ("hostile", []),
        ):
            keys[name] = subprocess.run(
                [*OPENPARITY, "route", "keys", "add", name, "-c", str(path), *extra],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        time.sleep(1.5)  # the key ring's refresh
        try:
            clean = asyncio.run(drive(url, keys, seconds, concurrency, hostile=False))

            def sicken() -> None:
                nonlocal redis_process
                time.sleep(seconds * 0.15)
                with frozen(postgres.process.pid):
                    time.sleep(10)
                time.sleep(seconds * 0.15)
                port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
                redis_process = restart_redis(redis_process, port, directory)

            sick = threading.Thread(target=sicken)
            sick.start()
            hostile = asyncio.run(drive(url, keys, seconds, concurrency, hostile=True))
            sick.join()
            time.sleep(2)
            asking = urllib.request.Request(
                url.removesuffix("/v1") + "/health",
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            )
            with urllib.request.urlopen(asking, timeout=10) as answer:
                health = json.loads(answer.read())
        finally:
            gateway.terminate()
            gateway.wait(120)
            for stub in (open_stub, closed_stub):
                stub.terminate()
                stub.wait(30)
        db = LedgerDB(postgres.url)
        ((rows,),) = db.query("SELECT COUNT(*) FROM requests")
        ((budgeted,),) = db.query(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM requests r JOIN api_keys k"
            " ON r.key_id = k.key_id WHERE k.name = 'budgeted'"
        )
        db.close()
    report(clean, hostile, health, rows, budgeted)


def report(clean, hostile, health, rows: int, budgeted: float) -> None:
    def good(results):
        return [r for r in results if r[0] in ("good-1", "good-2")]

    clean_p99 = percentile([r[2] * 1000 for r in good(clean)], 99)
    hostile_p99 = percentile([r[2] * 1000 for r in good(hostile)], 99)
    good_statuses = Counter(r[1] for r in good(clean) + good(hostile))
    hostile_statuses = Counter(r[1] for r in hostile if r[0] == "hostile")
    routed = sum(r[3] for r in clean + hostile)
    breakers = [t["breaker"] for t in health.get("tiers", [])]
    # the closed tier's most expensive call: the prompt bound is the body's bytes
    max_call = (len(json.dumps(GOOD)) * 2.5 + 16 * PRICE_OUT) / 1e6
    print(f"clean:   {len(clean)} requests, good p99 {clean_p99:.1f} ms")
    bad = sum(r[0] == "hostile" for r in hostile)
    print(
        f"hostile: {len(hostile)} requests ({bad} hostile), good p99 {hostile_p99:.1f} ms"
        f" ({hostile_p99 / clean_p99:.2f}x the clean run)"
    )
    print(f"good requests by status: {dict(good_statuses)}")
    print(f"hostile requests by status: {dict(sorted(hostile_statuses.items()))}")
    print(f"breakers at the end: {breakers}; ledger rows {rows} for {routed} routed requests")
    print(f"budgeted key spent ${budgeted:.6f} of ${BUDGET} (+ one call's max ${max_call:.6f})")
    budget_statuses = Counter(r[1] for r in clean + hostile if r[0] == "budgeted")
    print(f"budgeted key's requests by status: {dict(budget_statuses)}")
    ok = (
        set(good_statuses) == {200}
        and breakers == ["closed", "closed"]
        and hostile_p99 <= 2 * clean_p99
        and rows == routed
        and budgeted <= BUDGET + max_call
        and 599 not in hostile_statuses
        and not any(s >= 500 for s in hostile_statuses)
    )
    print("PASS" if ok else "FAIL")
    raise SystemExit(0 if ok else 1)
