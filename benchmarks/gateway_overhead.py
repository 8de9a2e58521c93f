"""Latency the gateway adds over calling a zero-latency upstream directly, side by side with
LiteLLM's proxy on the same upstream, at concurrency 100.

Same run, same stub process, same load generator (aiohttp):
  direct      the stub itself (the floor)
  openparity  `openparity serve`, one worker: auth, two tiers, default checks, ledger, metrics
  litellm     `litellm --config ... --num_workers 1` (skipped when not installed)
Prints p50 / p99 latency, added latency over direct, requests/s, and openparity vs LiteLLM.
The load generator shares the machine's cores with the servers: on 2 cores the absolute
figures include that contention; the ratios are what to compare.

    python benchmarks/gateway_overhead.py [--requests 5000] [--concurrency 100]
        [--litellm /path/to/venv/bin/litellm]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from pathlib import Path

from gateway_procs import LITELLM_KEY, load, percentile, start_gateway, start_litellm, start_stub


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
        f"{name:<11} alone: p50 {row['single_p50']:6.2f} ms p99 {row['single_p99']:6.2f} ms |"
        f" at {args.concurrency}: p50 {row['p50']:7.2f} ms  p99 {row['p99']:7.2f} ms"
        f"  {row['rps']:7.0f} req/s  non-answers {bad}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--litellm", default=shutil.which("litellm"))
    args = parser.parse_args()
    processes = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        try:
            upstream, stub = start_stub()
            processes.append(stub)
            config = {
                "auth": {"required": True},
                "tiers": [
                    {"model": f"openai:open@{upstream}", "max_concurrency": 256},
                    {"model": f"openai:closed@{upstream}", "max_concurrency": 256},
                ],
            }
            gateway_url, key, gateway = start_gateway(directory, config)
            processes.append(gateway)
            rows = [measure("direct", upstream, None, "stub", args)]
            rows.append(measure("openparity", gateway_url, key, "openparity-hybrid", args))
            if args.litellm:
                litellm_url, litellm = start_litellm(directory, upstream, args.litellm)
                processes.append(litellm)
                rows.append(measure("litellm", litellm_url, LITELLM_KEY, "bench", args))
        finally:
            for process in processes:
                process.terminate()
                process.wait(30)
    direct = rows[0]
    print()
    for row in rows[1:]:
        print(
            f"{row['name']}: adds alone p50 {row['single_p50'] - direct['single_p50']:.2f} ms,"
            f" p99 {row['single_p99'] - direct['single_p99']:.2f} ms;"
            f" at {args.concurrency}: p50 {row['p50'] - direct['p50']:.2f} ms,"
            f" p99 {row['p99'] - direct['p99']:.2f} ms; {row['rps']:.0f} req/s"
        )
    if len(rows) == 3:
        ours, theirs = rows[1], rows[2]
        print(
            f"openparity vs litellm: {ours['rps'] / theirs['rps']:.1f}x the requests/s,"
            f" p50 {theirs['p50'] / ours['p50']:.1f}x lower, p99 {theirs['p99'] / ours['p99']:.1f}x"
            " lower"
        )


if __name__ == "__main__":
    main()
