"""Load test: 10,000 requests through `openparity serve --workers 2` (shared state in a real
redis-server, the ledger in a real PostgreSQL) while both upstreams inject 20 % random faults
(500, 503, 429, empty 200, malformed JSON), one in five requests streamed.

Checks and prints: every request got an answer or a well-formed OpenAI-style error (no hang,
no malformed reply), ledger rows = requests, and the gateway's open sockets return to their
idle level afterwards (no leaked connections). Also the share answered by each tier and the
fallback reasons, from `openparity route stats`.

    python benchmarks/gateway_load.py [--requests 10000] [--concurrency 100] [--fault-rate 0.2]
        [--workers 2] [--sqlite]     (--sqlite: the SQLite ledger and in-process state instead)
    python benchmarks/gateway_load.py --hostile [--seconds 30]   (see gateway_hostile.py)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from gateway_procs import (
    OPENPARITY,
    children,
    load,
    open_sockets,
    percentile,
    start_gateway,
    start_stub,
)

from openparity.route.ledger_db import LedgerDB
from openparity.route.shared import POOL_SIZE
from openparity.testing.servers import running_postgres, running_redis

POOL = 64  # max_concurrency per tier: bounds the upstream connections the gateway keeps
SECOND_ROUND = 2000  # requests per later round
ROUNDS = 3
# sockets one worker may hold: the listener, each tier's upstream pool, its Redis pool, the
# ledger's and the key ring's database connections
PER_WORKER = 1 + 2 * POOL + POOL_SIZE + 2


def sockets_by_peer(pids: list[int]) -> dict[str, int]:
    """Established TCP connections of these processes, counted by the peer's port (`ss`)."""
    shown = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True).stdout
    counts: Counter[str] = Counter()
    for line in shown.splitlines():
        if any(f"pid={pid}," in line for pid in pids):
            counts[line.split()[4].rsplit(":", 1)[1]] += 1
    return dict(counts.most_common())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sqlite", action="store_true", help="SQLite ledger, one process's state")
    parser.add_argument("--hostile", action="store_true", help="Hostile clients, sick databases")
    parser.add_argument("--seconds", type=float, default=30.0, help="--hostile: each run's length")
    args = parser.parse_args()
    if args.hostile:
        from gateway_hostile import main as hostile

        hostile(args.seconds, min(args.concurrency, 50))
    processes = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as servers:
        directory = Path(tmp)
        shared: dict = {}
        if not args.sqlite:
            redis_url, _ = servers.enter_context(running_redis(directory))
            postgres = servers.enter_context(running_postgres())
            shared = {"shared_state": {"redis_url": redis_url}, "ledger": {"url": postgres.url}}
        try:
            open_url, open_stub = start_stub(args.fault_rate, seed=1)
            closed_url, closed_stub = start_stub(args.fault_rate, seed=2)
            processes += [open_stub, closed_stub]
            models = directory / "models.yaml"  # prices, so that every attempt is costed
            models.write_text(
                "models:\n"
                f"  open: {{backend: openai, model: open, base_url: '{open_url}',"
                " price: {input: 0.1, output: 0.2, source: benchmark}}\n"
                f"  closed: {{backend: openai, model: closed, base_url: '{closed_url}',"
                " price: {input: 2.5, output: 10.0, source: benchmark}}\n",
                encoding="utf-8",
            )
            tier = {
                "retries": 1,
                "max_concurrency": POOL,
                "breaker_failures": 50,
                "breaker_cooldown_s": 1.0,
                "precommit_tokens": 2,
            }
            config = {
                "models_file": str(models),
                "tiers": [{"model": "open", **tier}, {"model": "closed", **tier}],
                **shared,
            }
            workers = 1 if args.sqlite else args.workers
            url, key, gateway = start_gateway(directory, config, workers=workers)
            processes.append(gateway)
            idle = open_sockets(gateway.pid)
            wall, outcomes = asyncio.run(
                load(
                    url,
                    key,
                    "openparity-hybrid",
                    requests=args.requests,
                    concurrency=args.concurrency,
                    stream_every=5,
                )
            )
            time.sleep(1.0)
            after = open_sockets(gateway.pid)  # the keep-alive pools stay open
            counts = []
            for _ in range(ROUNDS):  # later rounds fill the pools up to their bound, not beyond
                asyncio.run(
                    load(
                        url,
                        key,
                        "openparity-hybrid",
                        requests=SECOND_ROUND,
                        concurrency=args.concurrency,
                        stream_every=5,
                    )
                )
                time.sleep(1.0)
                counts.append(open_sockets(gateway.pid))
            settled = counts[-1]
            peers = sockets_by_peer([gateway.pid, *children(gateway.pid)])
            gateway.terminate()  # graceful: drains the ledger
            gateway.wait(60)
            processes.remove(gateway)
            ledger = shared["ledger"]["url"] if shared else str(directory / "gateway.sqlite")
            db = LedgerDB(ledger if shared else Path(ledger))
            ((rows,),) = db.query("SELECT COUNT(*) FROM requests")
            ((attempts,),) = db.query("SELECT COUNT(*) FROM attempts")
            db.close()
            stats = subprocess.run(
                [*OPENPARITY, "route", "stats", "--ledger", ledger],
                capture_output=True,
                text=True,
            ).stdout
        finally:
            for process in processes:
                process.terminate()
                process.wait(30)
    kinds = Counter(o.kind for o in outcomes)
    statuses = Counter(o.status for o in outcomes)
    latencies = [o.latency_s * 1000 for o in outcomes]
    rate = len(outcomes) / wall
    where = "SQLite, one process" if args.sqlite else f"{args.workers} workers, Redis, PostgreSQL"
    print(
        f"{len(outcomes)} requests in {wall:.1f} s ({rate:.0f} req/s), concurrency"
        f" {args.concurrency}, upstream faults {args.fault_rate:.0%} each ({where})"
    )
    print(f"replies: {dict(kinds)}; HTTP statuses: {dict(sorted(statuses.items()))}")
    print(
        f"latency p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms,"
        f" max {max(latencies):.1f} ms"
    )
    sent = len(outcomes) + ROUNDS * SECOND_ROUND
    print(f"ledger: {rows} request rows ({attempts} attempts) for {sent} requests (all rounds)")
    print(
        f"gateway sockets: {idle} idle before, {after} after the load, {counts} after each"
        f" further round of {SECOND_ROUND:,} (bound: {idle} + {workers} workers x {PER_WORKER})"
    )
    print(f"gateway sockets by peer port: {peers}")
    print(stats)
    ok = kinds.get("bad", 0) == 0 and len(outcomes) == args.requests and rows == sent
    # no leak: every pool stays within its bound (an upstream's: POOL per worker), however
    # many rounds; the pools of a tier that sees few requests keep filling up to it
    over = {port: n for port, n in peers.items() if n > max(POOL, POOL_SIZE) * workers}
    ok = ok and settled <= idle + PER_WORKER * workers and not over
    print("PASS" if ok else "FAIL")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
