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
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openparity.atomic import write_atomic
from openparity.data.decontam import DEFAULT_BENCHMARKS, BenchmarkIndex, Decontaminate
from openparity.data.dedup import ExactDedup, NearDedup
from openparity.data.filters import PiiScrubber, QualityFilter
from openparity.data.records import Doc, Malformed, parse_line, read_docs
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
    toxicity_classifier: Callable[[str], float] | None = None  # your model; the word list always
    review: ReviewThresholds = field(default_factory=ReviewThresholds)


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
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.json"
    state = _start(state_path, out, inputs, resume)
    quality = QualityFilter(min_words=settings.min_words, scripts=settings.scripts)
    index = BenchmarkIndex.from_benchmarks(settings.benchmarks) if settings.benchmarks else None
    steps: list[Any] = [quality, Toxicity(classifier=settings.toxicity_classifier)]
    decontaminate = Decontaminate(index) if index is not None else None
    if decontaminate is not None:
        steps.append(decontaminate)
    scrubber, exact = PiiScrubber(), ExactDedup()
    near = (
        NearDedup(settings.near_threshold, settings.num_perm) if settings.near_threshold else None
    )
    report = CleanReport([str(p) for p in inputs], **state.get("report", {}))
    _rebuild(out / "kept.jsonl", exact, near)
    started = time.perf_counter() - report.seconds
    handles = {name: (out / f"{name}.jsonl").open("a", encoding="utf-8") for name in OUTPUTS}
    try:
        for path in inputs:
            done_lines = state["done"].get(str(path), 0)
            batch: list[tuple[str, dict[str, Any]]] = []
            line = done_lines
            for item in read_docs(path, start_line=done_lines):
                line += 1
                report.lines += 1
                if item is None:
                    report.blank += 1
                elif isinstance(item, Malformed):
                    report.quarantined += 1
                    batch.append(("quarantine", asdict(item)))
                else:
                    batch.append(_one(item, steps, scrubber, exact, near, report))
                if len(batch) >= settings.batch:
                    _commit(batch, handles, state, state_path, str(path), line, report, started)
                    batch = []
                    if progress:
                        progress(report)
            _commit(batch, handles, state, state_path, str(path), line, report, started)
    except KeyboardInterrupt:
        raise CleanError(
            f"interrupted after {report.lines} lines; everything committed is kept",
            hint="continue with --resume",
        ) from None
    finally:
        for handle in handles.values():
            handle.close()
    report.reasons = dict(Counter(report.reasons))
    report.pii_replaced = dict(scrubber.counts)
    report.contaminated_items = dict(decontaminate.items_hit) if decontaminate else {}
    if near is not None:
        bands, rows = near.bands_rows
        report.near_dedup = {"threshold": settings.near_threshold, "num_perm": settings.num_perm,
                             "bands": bands, "rows": rows, "shingle_words": 5}  # fmt: skip
    report.seconds = time.perf_counter() - started
    if not report.balanced:
        raise CleanError(f"records do not add up: {report.to_dict()}")
    report.review = review(out / "kept.jsonl", settings.review).to_dict()
    write_atomic(out / "report.json", json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    return report


def _one(doc: Doc, steps: list[Any], scrubber: PiiScrubber, exact: ExactDedup,
         near: NearDedup | None, report: CleanReport) -> tuple[str, dict[str, Any]]:  # fmt: skip
    for step in steps:
        reason = step(doc)
        if reason:
            return _reject(doc, step.name, reason, report)
    scrubber(doc)
    for step in (exact, near):
        reason = step(doc) if step is not None else None
        if reason:
            return _reject(doc, step.name, reason, report)
    report.kept += 1
    return "kept", {**doc.record, "id": doc.id}


def _reject(doc: Doc, step: str, reason: str, report: CleanReport) -> tuple[str, dict[str, Any]]:
    report.rejected += 1
    report.rejected_by[step] = report.rejected_by.get(step, 0) + 1
    kind = reason.split(":")[0] if step != "decontaminate" else ":".join(reason.split(":")[:2])
    report.reasons[kind] = report.reasons.get(kind, 0) + 1
    return "rejected", {"id": doc.id, "source": doc.source, "line": doc.line, "step": step,
                        "reason": reason, "record": doc.record}  # fmt: skip


def _commit(batch, handles, state, state_path: Path, source: str, line: int,
            report: CleanReport, started: float) -> None:  # fmt: skip
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
