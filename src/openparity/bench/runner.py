"""Run a task on a model: bounded concurrency, cached responses, records written as they finish,
resumable after a crash. Failed requests are recorded as errors (never scored as wrong) and
retried on resume."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from openparity import __version__
from openparity.bench.errors import RunStoreError, SandboxUnavailableError, TaskError
from openparity.bench.store import Record, RunInfo, RunStore
from openparity.bench.task import Item, PromptSettings, Task, select
from openparity.errors import OpenparityError
from openparity.models.base import ChatModel
from openparity.models.errors import UnsupportedCapabilityError
from openparity.models.types import ChatRequest, Completion

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RunSummary:
    run: RunInfo
    total: int
    done: int
    errors: int
    from_cache: int

    @property
    def complete(self) -> bool:
        return self.done == self.total


def resume_command(run: RunInfo) -> str:
    """The command that continues `run`: the one that started it, with --resume."""
    command = run.settings.get("command")
    if not command:
        return f"openparity bench run {run.model} {run.task} (its original options) --resume"
    return command if command.endswith(" --resume") else f"{command} --resume"


def _nothing_to_resume(store: RunStore, model: str, task: str) -> RunStoreError:
    """--resume with settings that match no stored run: say so, and list what can resume."""
    stopped = [
        r
        for r in store.list_runs()
        if r.model == model and r.task == task and r.status != "complete"
    ]
    if not stopped:
        return RunStoreError(
            f"--resume: no stopped run of {task} on {model} in {store.path}",
            hint="drop --resume to start one (openparity bench runs lists the store)",
        )
    listed = "; ".join(
        f"{r.run_id} ({r.status}, {len(store.done(r.run_id))}/"
        f"{len(r.item_ids) * int(r.settings.get('samples', 1))}): "
        f"{resume_command(r)}"
        for r in stopped[-3:]
    )
    return RunStoreError(
        f"--resume: no stored run of {task} on {model} has these settings",
        hint=f"resume one of these with its own options: {listed}",
    )


def run_id_for(model: str, task: Task, settings: PromptSettings, item_ids: list[str]) -> str:
    """Same model (its `identity`), task, settings and items: same run id (what --resume finds)."""
    identity = json.dumps(
        {
            "model": model,
            "task": task.name,
            "settings": settings.as_dict(),
            "items": item_ids,
            "source": task.source().description,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9.-]+", "-", model.partition("#")[0]).strip("-")[:40]
    return f"{task.name}-{slug}-{digest}"


async def run_task(
    model: ChatModel,
    task: Task,
    store: RunStore,
    *,
    settings: PromptSettings | None = None,
    limit: int | None = None,
    seed: int = 0,
    resume: bool = False,
    concurrency: int | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
    command: str | None = None,
    only_resume: bool = False,
) -> RunSummary:
    """Run (or resume) `task` on `model`; returns how far it got. `resume` continues a stopped
    run with the same settings; `only_resume` refuses to start a new one (the CLI's --resume).
    `command` is the command line, kept so the run's resume command can be printed exactly."""
    settings = settings or task.default_settings()
    task.check(settings)
    if task.needs_vision and not model.spec.vision:
        raise TaskError(
            f"task {task.name} sends images and {model.name} is not marked vision-capable",
            hint="use a vision model, or set `vision: true` for it in models.yaml",
        )
    every_item = task.items()
    items = select(every_item, limit, seed=seed, whole_clusters=task.circular_eval)
    item_ids = [i.id for i in items]
    run_id = run_id_for(model.identity, task, settings, item_ids)
    run = store.find_run(run_id)
    if run is None and only_resume:
        raise _nothing_to_resume(store, model.name, task.name)
    if run is None:
        source = task.source()
        run = store.create_run(
            RunInfo(
                run_id=run_id,
                model=model.name,
                task=task.name,
                settings={
                    **settings.as_dict(),
                    "seed": seed,
                    "openparity": __version__,
                    "circular": task.circular_eval,
                    "task_items": len(every_item),  # what a verdict's power note can ask for
                    **({"command": command} if command else {}),
                },
                item_ids=item_ids,
                source=source.description,
                fixture=source.fixture,
                metric=task.metric
                + (" (log-likelihood)" if settings.variant in task.loglikelihood_variants else ""),
                margin=task.equivalence_margin,
            )
        )
    elif not resume and run.status != "complete":
        raise RunStoreError(
            f"run {run_id} already exists and is {run.status}",
            hint=f"pass --resume to continue it: {resume_command(run)}",
        )
    finished = store.done(run_id)
    todo = [
        (item, s) for item in items for s in range(settings.samples) if (item.id, s) not in finished
    ]
    total = len(items) * settings.samples
    counts = {"done": total - len(todo), "errors": 0, "cache": 0}
    if progress:
        progress(counts["done"], total)

    def finish(record: Record) -> None:
        store.put(record)
        if record.ok:
            counts["done"] += 1
        else:
            counts["errors"] += 1
        if progress:
            progress(counts["done"], total)

    store.set_status(run_id, "running")
    try:
        if settings.variant in task.loglikelihood_variants:
            await _run_loglikelihood(model, task, run_id, todo, concurrency, finish)
        else:
            await _run_generative(
                model, task, run_id, settings, todo, concurrency, use_cache, store, counts, finish
            )
    finally:
        status = "complete" if counts["done"] == total else "incomplete"
        store.set_status(run_id, status)
    return RunSummary(
        store.get_run(run_id), total, counts["done"], counts["errors"], counts["cache"]
    )


async def _run_generative(
    model: ChatModel,
    task: Task,
    run_id: str,
    settings: PromptSettings,
    todo: list[tuple[Item, int]],
    concurrency: int | None,
    use_cache: bool,
    store: RunStore,
    counts: dict[str, int],
    finish: Callable[[Record], None],
) -> None:
    """Generate (or take from the cache) every answer and score it as it arrives."""
    requests = [task.request(item, settings, s) for item, s in todo]
    scoring: set[asyncio.Task[None]] = set()
    to_generate: list[int] = []
    try:
        for index, request in enumerate(requests):
            hit = store.cached(request.cache_key(model.identity)) if use_cache else None
            if hit is None:
                to_generate.append(index)
                continue
            counts["cache"] += 1
            scoring.add(
                asyncio.ensure_future(_score(task, run_id, *todo[index], request, hit, finish))
            )
        batch = [requests[i] for i in to_generate]
        async for position, result in model.iter_batch(batch, concurrency=concurrency):
            index = to_generate[position]
            item, sample = todo[index]
            if isinstance(result, OpenparityError):
                finish(
                    _record(
                        run_id, item, sample, _prompt_hash(requests[index]), error=result.one_line()
                    )
                )
                continue
            if use_cache:
                store.cache(requests[index].cache_key(model.identity), result)
            scoring.add(
                asyncio.ensure_future(
                    _score(task, run_id, item, sample, requests[index], result, finish)
                )
            )
        if scoring:
            await asyncio.gather(*scoring)
    finally:
        for pending in scoring:
            pending.cancel()


async def _run_loglikelihood(
    model: ChatModel,
    task: Task,
    run_id: str,
    todo: list[tuple[Item, int]],
    concurrency: int | None,
    finish: Callable[[Record], None],
) -> None:
    """Score each item by the log-likelihood of its choices (no generation)."""
    slots = asyncio.Semaphore(max(1, concurrency or model.spec.max_concurrency))

    async def one(item: Item, sample: int) -> None:
        requests = task.loglikelihood_requests(item)
        first = requests[0]
        asked = first.messages or [{"role": "user", "content": first.context}]
        key = _prompt_hash(ChatRequest(messages=list(asked)))
        async with slots:
            started = time.perf_counter()
            try:
                results = await model.loglikelihood(requests)
            except UnsupportedCapabilityError:
                raise  # the model cannot do this at all: stop with the clear error
            except OpenparityError as exc:
                finish(_record(run_id, item, sample, key, error=exc.one_line()))
                return
        score = task.score_loglikelihood(item, results)
        finish(
            _record(
                run_id,
                item,
                sample,
                key,
                response=json.dumps([r.logprob for r in results]),
                extracted=score.extracted,
                score=score.value,
                detail=score.detail,
                latency_s=time.perf_counter() - started,
            )
        )

    await asyncio.gather(*(one(item, sample) for item, sample in todo))


async def _score(
    task: Task,
    run_id: str,
    item: Item,
    sample: int,
    request: ChatRequest,
    completion: Completion,
    finish: Callable[[Record], None],
) -> None:
    key = _prompt_hash(request)
    try:
        score = await task.score(item, completion.text)
    except SandboxUnavailableError:
        raise  # nothing can be scored safely: stop the run rather than record wrong answers
    except OpenparityError as exc:  # e.g. an LLM judge failed: an error, retried on resume
        finish(_record(run_id, item, sample, key, error=f"scorer: {exc.one_line()}"))
        return
    except Exception as exc:  # a scorer bug must not cost the response: record it as an error
        finish(_record(run_id, item, sample, key, error=f"scorer failed: {exc!r}"))
        return
    finish(
        _record(
            run_id,
            item,
            sample,
            key,
            response=completion.text,
            extracted=score.extracted,
            score=score.value,
            detail=score.detail,
            finish_reason=completion.finish_reason,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            cost_usd=completion.cost_usd,
            latency_s=completion.latency_s,
            mean_logprob=completion.mean_logprob,
        )
    )


def _record(run_id: str, item: Item, sample: int, prompt_hash: str, **fields: object) -> Record:
    """A record of one (item, sample): a scored answer, or an error (then never scored)."""
    return Record(
        run_id=run_id,
        item_id=item.id,
        sample=sample,
        cluster=item.cluster,
        prompt_hash=prompt_hash,
        **fields,
    )


def _prompt_hash(request: ChatRequest) -> str:
    return request.cache_key("")[:16]
