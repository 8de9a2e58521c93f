"""Latency the gateway adds over calling a zero-latency upstream directly, and requests/s as
workers are added, side by side with LiteLLM's proxy on the same upstream, at concurrency 100.

Same run, same stub process, same load generator (aiohttp); each server runs alone while it is
measured, then stops:
  direct                the stub itself (the floor)
  openparity 1w         `openparity serve`, one worker, state in the process: auth, two tiers,
                        default checks, ledger, metrics
  openparity 1w budget  the same with a key that has a budget and a tokens-per-minute limit:
                        every upstream call holds its maximum cost and settles it
  openparity Nw+redis   `serve --workers N` with shared_state in a real redis-server (the key
                        has a rate limit, so every request runs the shared limiter); "budget":
                        holds and token buckets in Redis too
  litellm Nw+redis      `litellm --num_workers N` with its router state in the same Redis
                        (skipped when LiteLLM is not installed; --litellm PATH)
Prints p50 / p99 latency alone and under load, added latency over direct, requests/s, the
scaling from 1 to N workers, and openparity vs LiteLLM at equal workers. The load generator
shares the machine's cores with the servers: on 2 cores the absolute figures include that
contention, and a second worker competes with the load generator; the ratios are what to
compare.

    python benchmarks/gateway_overhead.py [--requests 5000] [--concurrency 100] [--workers 1,2]
        [--litellm /path/to/venv/bin/litellm]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from pathlib import Path

from gateway_procs import LITELLM_KEY, load, percentile, start_gateway, start_litellm, start_stub

from openparity.testing.servers import running_redis


def measure(name: str, base_url: str, key: str | None, model: str, args) -> dict:
    """Unloaded (one request at a time), then at --concurrency."""
    asyncio.run(load(base_url, key, model, requests=500, concurrency=args.concurrency))  # warm
    _, alone = asyncio.run(load(base_url, key, model, requests=1000, concurrency=1))
    wall, outcomes = asyncio.run(
        load(base_url, key, model, requests=args.requests, concurrency=args.concurrency)
    )
    single = [o.latency_s * 1000 for o in alone]
    latencies = [o.latency_s * 1000 for o in outcomes]
    bad = sum(o.kind != "answer" for o in outcomes)
    row = {
        "name": name,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "rps": len(outcomes) / wall,
        "bad": bad,
        "single_p50": percentile(single, 50),
        "single_p99": percentile(single, 99),
    }
    print(
        f"{name:<27} alone: p50 {row['single_p50']:6.2f} ms p99 {row['single_p99']:6.2f} ms |"
        f" at {args.concurrency}: p50 {row['p50']:7.2f} ms  p99 {row['p99']:7.2f} ms"
        f"  {row['rps']:7.0f} req/s  non-answers {bad}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--workers", default="1,2", help="Worker counts, comma-separated.")
    parser.add_argument("--litellm", default=shutil.which("litellm"))
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp, running_redis(Path(tmp)) as (redis_url, _):
        directory = Path(tmp)
        upstream, stub = start_stub()
        try:
            rows["direct"] = measure("direct", upstream, None, "stub", args)
            models = directory / "models.yaml"  # priced tiers: every call's cost is held
            models.write_text(
                "models:\n"
                f"  open: {{backend: openai, model: open, base_url: '{upstream}',"
                " price: {input: 0.1, output: 0.2, source: benchmark}}\n"
                f"  closed: {{backend: openai, model: closed, base_url: '{upstream}',"
                " price: {input: 2.5, output: 10.0, source: benchmark}}\n",
                encoding="utf-8",
            )
            tiers = [
                {"model": "open", "max_concurrency": 256},
                {"model": "closed", "max_concurrency": 256},
            ]
            rate = ("--rate", "1000000")
            budget = (*rate, "--budget-usd", "1000000", "--tpm", "1000000000000")
            redis = {"shared_state": {"redis_url": redis_url}}
            arms = [("openparity 1w", 1, {}, rate), ("openparity 1w budget", 1, {}, budget)]
            arms += [(f"openparity {n}w+redis", n, redis, rate) for n in counts]
            arms += [(f"openparity {counts[-1]}w+redis budget", counts[-1], redis, budget)]
            for name, workers, extra, key_args in arms:
                url, key, gateway = start_gateway(
                    directory,
                    {
                        "auth": {"required": True},
                        "models_file": str(models),
                        "tiers": tiers,
                        **extra,
                    },
                    workers=workers,
                    key_args=key_args,
                    name=f"gw{len(rows)}",
                )
                try:
                    rows[name] = measure(name, url, key, "openparity-hybrid", args)
                finally:
                    gateway.terminate()
                    gateway.wait(60)
            for workers in counts if args.litellm else []:
                url, litellm = start_litellm(
                    directory, upstream, args.litellm, workers=workers, redis_url=redis_url
                )
                try:
                    name = f"litellm {workers}w+redis"
                    rows[name] = measure(name, url, LITELLM_KEY, "bench", args)
                finally:
                    litellm.terminate()
                    litellm.wait(60)
        finally:
            stub.terminate()
            stub.wait(30)
    report(rows, counts, args.concurrency)


def report(rows: dict[str, dict], counts: list[int], concurrency: int) -> None:
    direct = rows["direct"]
    print()
    for name, row in rows.items():
        if name == "direct":
            continue
        print(
            f"{name}: adds alone p50 {row['single_p50'] - direct['single_p50']:.2f} ms,"
            f" p99 {row['single_p99'] - direct['single_p99']:.2f} ms;"
            f" at {concurrency}: p50 {row['p50'] - direct['p50']:.2f} ms,"
            f" p99 {row['p99'] - direct['p99']:.2f} ms; {row['rps']:.0f} req/s"
        )
    for side in ("openparity", "litellm"):
        first, last = f"{side} {counts[0]}w+redis", f"{side} {counts[-1]}w+redis"
        if first in rows and last in rows and first != last:
            ratio = rows[last]["rps"] / rows[first]["rps"]
            print(f"{side}: {counts[-1]} workers give {ratio:.2f}x the requests/s of {counts[0]}")
    for n in counts:
        ours, theirs = rows.get(f"openparity {n}w+redis"), rows.get(f"litellm {n}w+redis")
        if ours and theirs:
            print(
                f"openparity vs litellm, {n} worker(s) + redis: {ours['rps'] / theirs['rps']:.1f}x"
                f" the requests/s, p50 {theirs['p50'] / ours['p50']:.1f}x lower,"
                f" p99 {theirs['p99'] / ours['p99']:.1f}x lower"
            )


if __name__ == "__main__":
    main()
