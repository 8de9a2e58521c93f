"""`openparity data clean`: a streamed pipeline over JSONL records where every input line ends
in exactly one place: kept.jsonl, rejected.jsonl (with the step and reason) or
quarantine.jsonl (malformed, with file and line). Counts add up and are checked.

Order: quality filters -> toxicity -> decontamination -> PII scrubbing -> exact dedup -> near
dedup (the cheap rejections first; the stateful dedup indexes only what is kept). Work is
committed batch by batch: outputs are appended and fsync'ed, then state.json records how far
each input got and the outputs' sizes. A crash or Ctrl-C loses nothing committed;
`resume=True` truncates the outputs to the committed sizes, rebuilds the dedup indexes from
kept.jsonl, and continues.
Memory holds the dedup indexes only (one hash and one MinHash per kept record), never the data.
At the end the ethics review (diversity, representation) reads kept.jsonl; its thresholds can
fail the run (`report.review["passed"]`), the outputs stay for inspection.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openparity.atomic import write_atomic
from openparity.data.decontam import DEFAULT_BENCHMARKS, BenchmarkIndex, Decontaminate
from openparity.data.dedup import (
    DiskExactDedup,
    DiskNearDedup,
    ExactDedup,
    NearDedup,
    expected_catch_rate,
)
from openparity.data.filters import PiiScrubber, QualityFilter
from openparity.data.records import Doc, Malformed, parse_line
from openparity.data.review import ReviewThresholds, Toxicity, review
from openparity.errors import OpenparityError

OUTPUTS = ("kept", "rejected", "quarantine")


class CleanError(OpenparityError):
    """The cleaning run cannot start or continue."""


@dataclass(frozen=True)
class CleanSettings:
    near_threshold: float | None = 0.8  # None: no near-duplicate step
    num_perm: int = 128
    benchmarks: tuple[str, ...] = DEFAULT_BENCHMARKS
    scripts: tuple[str, ...] = ()
    min_words: int = 3
    batch: int = 1000
    executor: str = "local"  # local, or ray (the stateless steps on Ray Data)
    ray_workers: int = 2
    near_index: str = "memory"  # or disk: dedup indexes in SQLite, signatures in a file
    embedding_sample: int = 0  # > 0: embedding coverage of this many kept records in the review
    toxicity_classifier: Callable[[str], float] | None = None  # your model; the word list always
    review: ReviewThresholds | None = field(default_factory=ReviewThresholds)  # None: skip


@dataclass
class CleanReport:
    inputs: list[str]
    lines: int = 0
    blank: int = 0
    kept: int = 0
    rejected: int = 0
    quarantined: int = 0
    rejected_by: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    pii_replaced: dict[str, int] = field(default_factory=dict)
    contaminated_items: dict[str, int] = field(default_factory=dict)
    near_dedup: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    review: dict[str, Any] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.lines == self.blank + self.kept + self.rejected + self.quarantined

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"balanced": self.balanced}


@dataclass(frozen=True)
class Screened:
    """What the stateless steps made of one input line (`where` is blank, quarantine,
    rejected or candidate: a record that still has to pass the dedup steps)."""

    where: str
    row: dict[str, Any]
    text: str = ""
    pii: dict[str, int] = field(default_factory=dict)


class Screen:
    """The per-record, stateless part of the pipeline: parse, filters, toxicity,
    decontamination, PII. Runs in-process, or in Ray workers (one instance per worker)."""

    def __init__(self, settings: CleanSettings) -> None:
        index = BenchmarkIndex.from_benchmarks(settings.benchmarks) if settings.benchmarks else None
        self.steps: list[Any] = [
            QualityFilter(min_words=settings.min_words, scripts=settings.scripts),
            Toxicity(classifier=settings.toxicity_classifier),
        ]
        if index is not None:
            self.steps.append(Decontaminate(index))

    def __call__(self, source: str, line: int, raw: str) -> Screened:
        if not raw.strip():
            return Screened("blank", {})
        doc = parse_line(source, line, raw)
        if isinstance(doc, Malformed):
            return Screened("quarantine", asdict(doc))
        for step in self.steps:
            reason = step(doc)
            if reason:
                return Screened("rejected", _rejection(doc, step.name, reason))
        scrubber = PiiScrubber()
        scrubber(doc)
        row = {"source": doc.source, "line": doc.line, "id": doc.id, "record": doc.record}
        return Screened("candidate", row, doc.text, dict(scrubber.counts))


def clean(
    inputs: list[Path],
    out: Path,
    settings: CleanSettings | None = None,
    *,
    resume: bool = False,
    progress: Callable[[CleanReport], None] | None = None,
) -> CleanReport:
    settings = settings or CleanSettings()
    for path in inputs:
        if not path.is_file():
            raise CleanError(f"input not found: {path}")
    if settings.executor not in ("local", "ray"):
        raise CleanError(f"unknown executor {settings.executor!r}", hint="local or ray")
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.json"
    state = _start(state_path, out, inputs, resume)
    screen = _ray_screen(settings) if settings.executor == "ray" else _local_screen(settings)
    exact = DiskExactDedup(out / "near-index") if settings.near_index == "disk" else ExactDedup()
    near = _near_dedup(settings, out)
    report = CleanReport([str(p) for p in inputs], **state.get("report", {}))
    _rebuild(out / "kept.jsonl", exact, near)
    started = time.perf_counter() - report.seconds
    handles = {name: (out / f"{name}.jsonl").open("a", encoding="utf-8") for name in OUTPUTS}
    try:
        for path in inputs:
            line = state["done"].get(str(path), 0)
            for chunk in _chunks(path, line, settings.batch):
                batch = [_settle(s, exact, near, report) for s in screen(str(path), chunk)]
                line = chunk[-1][0]
                _commit(
                    [b for b in batch if b],
                    handles,
                    state,
                    state_path,
                    str(path),
                    line,
                    report,
                    started,
                )
                if progress:
                    progress(report)
    except KeyboardInterrupt:
        raise CleanError(
            f"interrupted after {report.lines} lines; everything committed is kept",
            hint="continue with --resume",
        ) from None
    finally:
        for handle in handles.values():
            handle.close()
    if near is not None:
        bands, rows = near.bands_rows
        catch = expected_catch_rate(settings.near_threshold, bands, rows)
        report.near_dedup = {
            "threshold": settings.near_threshold,
            "num_perm": settings.num_perm,
            "bands": bands,
            "rows": rows,
            "shingle_words": 5,
            "catch_rate_at_threshold": round(catch, 4),
        }
    report.seconds = time.perf_counter() - started
    if not report.balanced:
        raise CleanError(f"records do not add up: {report.to_dict()}")
    if settings.review is not None:
        report.review = review(
            out / "kept.jsonl", settings.review, embeddings=settings.embedding_sample
        ).to_dict()
    write_atomic(out / "report.json", json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    return report


def _near_dedup(settings: CleanSettings, out: Path) -> NearDedup | None:
    if not settings.near_threshold:
        return None
    if settings.near_index == "disk":
        return DiskNearDedup(out / "near-index", settings.near_threshold, settings.num_perm)
    if settings.near_index != "memory":
        raise CleanError(f"unknown near index {settings.near_index!r}", hint="memory or disk")
    return NearDedup(settings.near_threshold, settings.num_perm)


def _chunks(path: Path, skip: int, size: int) -> Iterator[list[tuple[int, str]]]:
    """(line number, raw line) in chunks of `size`, after the first `skip` lines."""
    chunk: list[tuple[int, str]] = []
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for number, raw in enumerate(handle, start=1):
            if number <= skip:
                continue
            chunk.append((number, raw))
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _local_screen(settings: CleanSettings) -> Callable[[str, list], list[Screened]]:
    screen = Screen(settings)
    return lambda source, chunk: [screen(source, n, raw) for n, raw in chunk]


def _ray_screen(settings: CleanSettings) -> Callable[[str, list], list[Screened]]:
    """The stateless steps on a local or remote Ray cluster (`ray.init()` as configured by
    RAY_ADDRESS), over Ray Data in order; dedup stays in the driver."""
    try:
        import ray
    except ImportError:
        raise CleanError("the ray executor needs Ray", hint='pip install "ray[data]"') from None
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True

    class ScreenBatch:
        def __init__(self) -> None:
            self.screen = Screen(settings)

        def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
            lines = zip(batch["source"], batch["line"], batch["raw"], strict=True)
            done = [self.screen(source, int(n), raw) for source, n, raw in lines]
            return {"screened": [json.dumps(asdict(d), ensure_ascii=False) for d in done]}

    def run(source: str, chunk: list[tuple[int, str]]) -> list[Screened]:
        items = [{"source": source, "line": n, "raw": raw} for n, raw in chunk]
        dataset = ray.data.from_items(items).map_batches(
            ScreenBatch, concurrency=settings.ray_workers, batch_size=256
        )
        return [Screened(**json.loads(row["screened"])) for row in dataset.iter_rows()]

    return run


def _settle(
    screened: Screened, exact: ExactDedup, near: NearDedup | None, report: CleanReport
) -> tuple[str, dict[str, Any]] | None:
    """Count one screened line and pass candidates through the (stateful) dedup steps."""
    report.lines += 1
    if screened.where == "blank":
        report.blank += 1
        return None
    if screened.where == "quarantine":
        report.quarantined += 1
        return "quarantine", screened.row
    if screened.where == "rejected":
        _count_rejection(screened.row["step"], screened.row["reason"], report)
        return "rejected", screened.row
    row = screened.row
    doc = Doc(row["source"], row["line"], row["id"], row["record"], screened.text)
    for kind, count in screened.pii.items():
        report.pii_replaced[kind] = report.pii_replaced.get(kind, 0) + count
    for step in (exact, near):
        reason = step(doc) if step is not None else None
        if reason:
            _count_rejection(step.name, reason, report)
            return "rejected", _rejection(doc, step.name, reason)
    report.kept += 1
    return "kept", {**doc.record, "id": doc.id}


def _rejection(doc: Doc, step: str, reason: str) -> dict[str, Any]:
    return {
        "id": doc.id,
        "source": doc.source,
        "line": doc.line,
        "step": step,
        "reason": reason,
        "record": doc.record,
    }


def _count_rejection(step: str, reason: str, report: CleanReport) -> None:
    report.rejected += 1
    report.rejected_by[step] = report.rejected_by.get(step, 0) + 1
    if reason.startswith("contaminated:"):
        _, test, item = reason.split(":", 2)
        report.reasons[f"contaminated:{test}"] = report.reasons.get(f"contaminated:{test}", 0) + 1
        report.contaminated_items[item] = report.contaminated_items.get(item, 0) + 1
        return
    kind = reason.split(":")[0]
    report.reasons[kind] = report.reasons.get(kind, 0) + 1


def _commit(
    batch,
    handles,
    state,
    state_path: Path,
    source: str,
    line: int,
    report: CleanReport,
    started: float,
) -> None:
    for where, row in batch:
        handles[where].write(json.dumps(row, ensure_ascii=False) + "\n")
    for handle in handles.values():
        handle.flush()
        os.fsync(handle.fileno())
    state["done"][source] = line
    state["sizes"] = {name: handles[name].tell() for name in OUTPUTS}
    report.seconds = time.perf_counter() - started
    state["report"] = {k: v for k, v in asdict(report).items() if k != "inputs"}
    write_atomic(state_path, json.dumps(state, ensure_ascii=False))


def _start(state_path: Path, out: Path, inputs: list[Path], resume: bool) -> dict[str, Any]:
    existing = [out / f"{name}.jsonl" for name in OUTPUTS if (out / f"{name}.jsonl").exists()]
    if not resume:
        if existing or state_path.exists():
            raise CleanError(
                f"{out} already holds a cleaning run", hint="pass --resume, or another --out"
            )
        return {"inputs": [str(p) for p in inputs], "done": {}, "sizes": {}}
    if not state_path.exists():
        raise CleanError(f"nothing to resume in {out}", hint="run without --resume first")
    state = json.loads(state_path.read_text(encoding="utf-8"))
    if state["inputs"] != [str(p) for p in inputs]:
        raise CleanError("--resume needs the same inputs, in the same order, as the first run")
    for name in OUTPUTS:  # drop anything written after the last commit
        path = out / f"{name}.jsonl"
        size = state["sizes"].get(name, 0)
        if path.exists() and path.stat().st_size > size:
            with path.open("r+b") as handle:
                handle.truncate(size)
    return state


def _rebuild(kept: Path, exact: ExactDedup, near: NearDedup | None) -> None:
    """Dedup indexes from what was kept before a resume."""
    if not kept.exists():
        return
    with kept.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            doc = parse_line(str(kept), number, raw)
            if isinstance(doc, Doc):
                exact.remember(doc)
                if near is not None:
                    near.remember(doc)
