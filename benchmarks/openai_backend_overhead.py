"""OpenAI-compatible backend request overhead at concurrency 64 against a zero-latency stub.

Side by side in one run: the bare `openai` AsyncOpenAI client with its default httpx
transport and with its aiohttp transport, and openparity's backend (that client on aiohttp,
plus retries, accounting and batching). Same stub process, same requests. The ratio compares
openparity with the bare client on the same transport: the cost of the layer itself.
Prints requests/s and p50/p99 latency for each.

    python benchmarks/openai_backend_overhead.py [--requests 4000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

import openai

from openparity.models import ChatRequest, open_model
from openparity.models.endpoint import http_ok
from openparity.models.local_server import free_port

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]


async def bare_client(
    base_url: str, n: int, concurrency: int, transport: str = "aiohttp"
) -> tuple[float, list[float]]:
    http_client = openai.DefaultAioHttpClient() if transport == "aiohttp" else None
    client = openai.AsyncOpenAI(
        base_url=base_url, api_key="x", max_retries=0, http_client=http_client
    )
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one() -> None:
        async with semaphore:
            started = time.perf_counter()
            await client.chat.completions.create(model="stub", messages=MESSAGES, max_tokens=16)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    elapsed = time.perf_counter() - started
    await client.close()
    return n / elapsed, latencies


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
    try:
        while not http_ok(f"{base_url}/models", timeout_s=0.5):
            time.sleep(0.05)
        asyncio.run(bare_client(base_url, 200, args.concurrency))  # warm-up
        results: dict[str, list[tuple[float, list[float]]]] = {
            "bare (httpx)": [],
            "bare": [],
            "openparity": [],
        }
        for _ in range(args.rounds):
            for name in results:
                if name == "openparity":
                    run = openparity_backend(base_url, args.requests, args.concurrency)
                else:
                    transport = "httpx" if "httpx" in name else "aiohttp"
                    run = bare_client(base_url, args.requests, args.concurrency, transport)
                results[name].append(asyncio.run(run))
    finally:
        stub.terminate()
        stub.wait()

    print(f"{args.requests} requests x {args.rounds} rounds, concurrency {args.concurrency}")
    summary = {}
    for name, runs in results.items():
        rps = statistics.median(r for r, _ in runs)
        lat = [x for _, lats in runs for x in lats]
        summary[name] = rps
        print(
            f"{name:12s}: {rps:6.0f} req/s  p50 {pct(lat, 50):6.1f} ms  p99 {pct(lat, 99):6.1f} ms"
        )
    ratio = summary["openparity"] / summary["bare"]
    print(f"throughput ratio openparity / bare openai client (same transport): {ratio:.3f}")


if __name__ == "__main__":
    main()
