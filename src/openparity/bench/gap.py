"""`openparity gap`: run the open model (and a closed one, or published targets) on a set of
tasks, compare, and report. The README's main job."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from openparity.bench.baselines import PUBLISHED_BASELINES, Published
from openparity.bench.comparison import compare_to_reference
from openparity.bench.errors import TaskError
from openparity.bench.gap_report import GapReport, build_report
from openparity.bench.movement import measure_movement
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
    base_model: str | None = None  # the model before training: adds the before/after section
    base_runs: dict[str, str] = field(default_factory=dict)  # {task: finished base run id}
    models_file: Path | None = None  # a models.yaml naming the models (default: the usual search)


def _stop_if_it_all_failed(store: RunStore, model: str, summary: RunSummary) -> None:
    """Stop before comparing when a model answered (almost) nothing: say how many requests
    failed and why, instead of a comparison over no items."""
    if summary.done >= 2 or not summary.errors:
        return
    why = store.last_error(summary.run.run_id) or "no reason recorded"
    raise TaskError(
        f"{summary.errors}/{summary.total} requests to {model} failed on {summary.run.task}:"
        f" {why[:300]}",
        hint="fix the cause, then run the same command again: finished items are kept",
    )


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
        if missing and plan.base_model is None:
            raise TaskError(
                f"no closed model and no published target for: {', '.join(missing)}",
                hint="pass --closed MODEL, or --target TASK=SCORE/N",
            )
    base_needed = plan.base_model is not None and any(t.name not in plan.base_runs for t in tasks)
    roles = {"open": plan.open_model}
    if plan.closed_model:
        roles["closed"] = plan.closed_model
    if base_needed:
        roles["base"] = plan.base_model
    opened = {role: open_model(spec, models_file=plan.models_file) for role, spec in roles.items()}
    identities = [model.identity for model in opened.values()]
    if len(set(identities)) < len(identities):
        raise TaskError(
            f"the same model is given twice ({', '.join(f'--{r} {s}' for r, s in roles.items())})",
            hint="the open, closed and base models must be different models",
        )

    def progress_for(label: str) -> Callable[[int, int], None] | None:
        if on_progress is None:
            return None
        return lambda done, total: on_progress(label, done, total)

    try:
        comparisons, movements = [], []
        for task in tasks:
            runners = {
                role: model
                for role, model in opened.items()
                if not (role == "base" and task.name in plan.base_runs)
            }
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
                    for model in runners.values()
                )
            )
            for model, summary in zip(runners.values(), summaries, strict=True):
                _stop_if_it_all_failed(store, model.name, summary)
            run_of = {role: s.run.run_id for role, s in zip(runners, summaries, strict=True)}
            if task.name in plan.base_runs:
                run_of["base"] = plan.base_runs[task.name]
            closed, target = run_of.get("closed"), plan.targets.get(task.name)
            after = compare_to_reference(store, run_of["open"], closed, target)
            if after is not None:
                comparisons.append(after)
            if "base" in run_of:
                movements.append(
                    measure_movement(store, run_of["open"], run_of["base"], closed, target)
                )
    finally:
        for model in opened.values():
            await model.aclose()
        for task in tasks:
            await task.aclose()
    return build_report(comparisons, movements=movements)
