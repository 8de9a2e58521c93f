"""OpenAI-compatible backend request overhead at concurrency 64 against a zero-latency stub.

Side by side in one run, same stub process, same request:
  - the official `openai` AsyncOpenAI client, default httpx transport and aiohttp transport;
  - plain aiohttp POSTs (the floor: what any Python client on this machine can do);
  - openparity's backend (wire client on aiohttp + retries, accounting, batching).
Prints requests/s and p50/p99 latency for each, and openparity's ratio to plain aiohttp (the
cost of the layer) and to the official client.

    python benchmarks/openai_backend_overhead.py [--requests 4000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

import aiohttp
import openai

from openparity.models import ChatRequest, open_model
from openparity.models.endpoint import http_ok
from openparity.models.local_server import free_port

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]


async def _gather(n: int, concurrency: int, one) -> tuple[float, list[float]]:
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def timed() -> None:
        async with semaphore:
            started = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(timed() for _ in range(n)))
    return n / (time.perf_counter() - started), latencies


async def sdk(base_url: str, n: int, concurrency: int, transport: str) -> tuple[float, list[float]]:
    http_client = openai.DefaultAioHttpClient() if transport == "aiohttp" else None
    client = openai.AsyncOpenAI(
        base_url=base_url, api_key="x", max_retries=0, http_client=http_client
    )

    async def one() -> None:
        await client.chat.completions.create(model="stub", messages=MESSAGES, max_tokens=16)

    result = await _gather(n, concurrency, one)
    await client.close()
    return result


async def plain_aiohttp(base_url: str, n: int, concurrency: int) -> tuple[float, list[float]]:
    body = {"model": "stub", "messages": MESSAGES, "max_tokens": 16}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> None:
            async with session.post(f"{base_url}/chat/completions", json=body) as response:
                await response.json()

        return await _gather(n, concurrency, one)


async def openparity_backend(base_url: str, n: int, concurrency: int) -> tuple[float, list[float]]:
    requests = [ChatRequest(messages=MESSAGES, max_tokens=16)] * n
    async with open_model(f"openai:stub@{base_url}") as model:
        started = time.perf_counter()
        results = await model.generate_batch(requests, concurrency=concurrency)
        elapsed = time.perf_counter() - started
    failures = [r for r in results if isinstance(r, Exception)]
    if failures:
        raise SystemExit(f"{len(failures)} requests failed: {failures[0]}")
    return n / elapsed, [r.latency_s for r in results]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    port = free_port()
    stub = subprocess.Popen(
        [sys.executable, "-m", "openparity.testing.stub_server", "--port", str(port)]
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    sides = {
        "openai SDK (httpx)": lambda n: sdk(base_url, n, args.concurrency, "httpx"),
        "openai SDK (aiohttp)": lambda n: sdk(base_url, n, args.concurrency, "aiohttp"),
        "plain aiohttp": lambda n: plain_aiohttp(base_url, n, args.concurrency),
        "openparity": lambda n: openparity_backend(base_url, n, args.concurrency),
    }
    results: dict[str, list[tuple[float, list[float]]]] = {name: [] for name in sides}
    try:
        while not http_ok(f"{base_url}/models", timeout_s=0.5):
            time.sleep(0.05)
        for side in sides.values():
            asyncio.run(side(200))  # warm-up
        for _ in range(args.rounds):
            for name, side in sides.items():
                results[name].append(asyncio.run(side(args.requests)))
    finally:
        stub.terminate()
        stub.wait()

    print(f"{args.requests} requests x {args.rounds} rounds, concurrency {args.concurrency}")
    rps = {}
    for name, runs in results.items():
        rps[name] = statistics.median(r for r, _ in runs)
        lat = [x for _, lats in runs for x in lats]
        p50, p99 = pct(lat, 50), pct(lat, 99)
        print(f"{name:21s}: {rps[name]:6.0f} req/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms")
    print(f"openparity / plain aiohttp        : {rps['openparity'] / rps['plain aiohttp']:.3f}")
    print(
        f"openparity / openai SDK (aiohttp) : {rps['openparity'] / rps['openai SDK (aiohttp)']:.2f}"
    )


if __name__ == "__main__":
    main()
