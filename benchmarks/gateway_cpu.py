"""CPU time the gateway spends per request, next to the upstream's and the client's, at
concurrency 1: direct to a zero-latency stub, then through `openparity serve` (one worker, auth,
two tiers, default checks, ledger, metrics). CPU seconds come from /proc (Linux), so the figure
is far less noisy than latency on a shared machine: use it to judge hot-path changes.

    python benchmarks/gateway_cpu.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from gateway_procs import load, percentile, start_gateway, start_stub


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    n = args.requests
    with tempfile.TemporaryDirectory() as tmp:
        upstream, stub = start_stub()
        tiers = [
            {"model": f"openai:open@{upstream}", "max_concurrency": 256},
            {"model": f"openai:closed@{upstream}", "max_concurrency": 256},
        ]
        url, key, gateway = start_gateway(
            Path(tmp), {"auth": {"required": True}, "tiers": tiers}, key_args=("--rate", "1e6")
        )
        try:
            asyncio.run(load(url, key, "openparity-hybrid", requests=300, concurrency=1))  # warm
            arms = (("direct", upstream, None, "stub"), ("gateway", url, key, "openparity-hybrid"))
            for name, base, auth, model in arms:
                before = cpu_seconds(gateway.pid), cpu_seconds(stub.pid), time.process_time()
                _, outcomes = asyncio.run(load(base, auth, model, requests=n, concurrency=1))
                after = cpu_seconds(gateway.pid), cpu_seconds(stub.pid), time.process_time()
                gw, up, client = ((b - a) / n * 1000 for a, b in zip(before, after, strict=True))
                p50 = percentile([o.latency_s * 1000 for o in outcomes], 50)
                bad = sum(o.kind != "answer" for o in outcomes)
                print(
                    f"{name:<8} p50 {p50:6.3f} ms | CPU per request: gateway {gw:.3f} ms,"
                    f" upstream {up:.3f} ms, client {client:.3f} ms | non-answers {bad}"
                )
        finally:
            gateway.terminate()
            stub.terminate()


if __name__ == "__main__":
    main()
