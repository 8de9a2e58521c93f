"""`openparity gap`: run the open model (and a closed one, or published targets) on a set of
tasks, compare, and report. The README's main job."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from openparity.bench.baselines import PUBLISHED_BASELINES, Published
from openparity.bench.compare import GapReport, build_report, compare_runs, compare_to_target
from openparity.bench.errors import TaskError
from openparity.bench.runner import RunSummary, run_task
from openparity.bench.sandbox import Sandbox
from openparity.bench.store import RunStore
from openparity.bench.tasks import get_task
from openparity.models import DEFAULT_LOCAL_MODEL, open_model

# Small enough to finish in a few minutes on 2 cores with the embedded 135M model.
DEFAULT_LIMITS = {"gsm8k": 30, "humaneval": 20, "mmlu": 100}


@dataclass
class GapPlan:
    open_model: str = DEFAULT_LOCAL_MODEL
    closed_model: str | None = None
    tasks: Sequence[str] = ("gsm8k", "humaneval", "mmlu")
    limit: int | None = None  # None: DEFAULT_LIMITS per task; 0: every item
    seed: int = 0
    targets: dict[str, Published] = field(default_factory=lambda: dict(PUBLISHED_BASELINES))
    concurrency: int | None = None
    isolate: bool = True


def _limit(plan: GapPlan, task: str) -> int | None:
    if plan.limit is None:
        return DEFAULT_LIMITS.get(task)
    return plan.limit or None


async def run_gap(
    plan: GapPlan,
    store: RunStore,
    *,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> GapReport:
    """Run every (model, task) pair (resuming finished work), then compare and report."""
    sandbox = Sandbox(isolate=plan.isolate)
    tasks = [get_task(name, sandbox=sandbox) for name in plan.tasks]
    if plan.closed_model is None:
        missing = [t.name for t in tasks if t.name not in plan.targets]
        if missing:
            raise TaskError(
                f"no closed model and no published target for: {', '.join(missing)}",
                hint="pass --closed MODEL, or --target TASK=SCORE/N",
            )
    models = [plan.open_model] + ([plan.closed_model] if plan.closed_model else [])
    opened = [open_model(m) for m in models]

    def progress_for(label: str) -> Callable[[int, int], None] | None:
        if on_progress is None:
            return None
        return lambda done, total: on_progress(label, done, total)

    try:
        comparisons = []
        for task in tasks:
            summaries: list[RunSummary] = await asyncio.gather(
                *(
                    run_task(
                        model,
                        task,
                        store,
                        limit=_limit(plan, task.name),
                        seed=plan.seed,
                        resume=True,
                        concurrency=plan.concurrency,
                        progress=progress_for(f"{task.name} · {model.name}"),
                    )
                    for model in opened
                )
            )
            open_run = summaries[0].run.run_id
            if plan.closed_model:
                comparisons.append(compare_runs(store, open_run, summaries[1].run.run_id))
            else:
                target = plan.targets[task.name]
                comparisons.append(compare_to_target(store, open_run, target))
    finally:
        for model in opened:
            await model.aclose()
        for task in tasks:
            await task.aclose()
    return build_report(comparisons)
