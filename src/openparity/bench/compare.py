"""Comparisons: two runs over the same items (paired), or one run against a published score."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from openparity.bench import stats
from openparity.bench.errors import RunStoreError
from openparity.bench.store import RunInfo, RunStore


@dataclass(frozen=True)
class RunScores:
    """Per-item scores of one run (mean over samples; errored items left out and counted)."""

    run: RunInfo
    scores: dict[str, float]
    clusters: dict[str, str | None]
    errors: int
    missing: int
    samples: dict[str, tuple[int, int]] = field(default_factory=dict)  # item: (n, correct)

    def pass_at_k(self) -> dict[int, float]:
        """Unbiased pass@k for k = 1, 5, 10, ... up to the samples every item has (0/1 scores)."""
        if not self.samples:
            return {}
        n_min = min(n for n, _ in self.samples.values())
        ks = [k for k in (1, 2, 5, 10, 20, 50, 100) if k <= n_min]
        return {
            k: float(np.mean([stats.pass_at_k(n, c, k) for n, c in self.samples.values()]))
            for k in ks
        }

    @property
    def estimate(self) -> stats.Estimate:
        ids = sorted(self.scores)
        return stats.mean_ci([self.scores[i] for i in ids], _clusters(self.clusters, ids))


@dataclass(frozen=True)
class Comparison:
    """Open against closed (paired runs) or against a published target, for one task."""

    task: str
    metric: str
    margin: float
    open: RunScores
    open_estimate: stats.Estimate
    closed: RunScores | None
    closed_estimate: stats.Estimate | None
    target: float | None
    target_source: str | None
    diff: stats.Estimate
    bootstrap: tuple[float, float] | None
    p_mcnemar: float | None
    p_difference: float
    p_equivalence: float
    sd: float
    detectable: float
    provable: float
    verdict: stats.Verdict
    p_difference_holm: float | None = None

    @property
    def closed_mean(self) -> float:
        return self.closed_estimate.mean if self.closed_estimate else float(self.target)

    @property
    def gap_ratio(self) -> float:
        """(closed - open) / closed, the seed's gap measure."""
        closed = self.closed_mean
        return (closed - self.open_estimate.mean) / closed if closed else math.nan

    @property
    def fixture(self) -> bool:
        return self.open.run.fixture or bool(self.closed and self.closed.run.fixture)


@dataclass(frozen=True)
class GapReport:
    comparisons: list[Comparison]
    created: float = field(default_factory=time.time)
    notes: list[str] = field(default_factory=list)


def load_scores(store: RunStore, run_id: str) -> RunScores:
    run = store.get_run(run_id)
    per_item: dict[str, list[float]] = {}
    clusters: dict[str, str | None] = {}
    errors = 0
    for record in store.records(run.run_id):
        if not record.ok:
            errors += 1
            continue
        per_item.setdefault(record.item_id, []).append(float(record.score))
        clusters[record.item_id] = record.cluster
    scores = {item: sum(v) / len(v) for item, v in per_item.items()}
    missing = len(set(run.item_ids) - set(scores))
    if run.settings.get("circular"):
        return _circular_scores(run, scores, errors)
    samples = {}
    if run.settings.get("samples", 1) > 1 and all(
        x in (0.0, 1.0) for v in per_item.values() for x in v
    ):
        samples = {item: (len(v), int(sum(v))) for item, v in per_item.items()}
    return RunScores(run, scores, clusters, errors, missing, samples)


def _circular_scores(run: RunInfo, scores: dict[str, float], errors: int) -> RunScores:
    """CircularEval: a question scores 1 only if every rotation of its options scored 1; a
    question with an unscored rotation is left out (and counted as missing)."""
    rotations: dict[str, list[str]] = {}
    for item_id in run.item_ids:
        rotations.setdefault(item_id.rsplit("/", 1)[0], []).append(item_id)
    per_question = {
        question: min(scores[i] for i in ids)
        for question, ids in rotations.items()
        if all(i in scores for i in ids)
    }
    missing = len(rotations) - len(per_question)
    return RunScores(run, per_question, dict.fromkeys(per_question), errors, missing)


def compare_runs(store: RunStore, open_run: str, closed_run: str) -> Comparison:
    """Paired comparison over the items both runs scored."""
    a, b = load_scores(store, open_run), load_scores(store, closed_run)
    if a.run.task != b.run.task:
        raise RunStoreError(
            f"runs are on different tasks ({a.run.task} vs {b.run.task})",
            hint="compare runs of the same task and items",
        )
    common = sorted(set(a.scores) & set(b.scores))
    if len(common) < 2:
        raise RunStoreError(
            f"runs {a.run.run_id} and {b.run.run_id} share {len(common)} scored items",
            hint="run both models with the same --limit and --seed",
        )
    x = [a.scores[i] for i in common]
    y = [b.scores[i] for i in common]
    clusters = _clusters(a.clusters, common)
    diff = stats.paired_difference(x, y, clusters)
    binary = all(v in (0.0, 1.0) for v in x + y)
    sd = float(np.std(np.subtract(x, y), ddof=1))
    if sd == 0:  # identical answers so far: plan power with correlated 0/1 scores instead
        sd = stats.paired_sd(_smoothed_rate(x + y), correlation=0.5)
    return _finish(
        a,
        b,
        None,
        None,
        diff,
        stats.mean_ci(x, clusters),
        stats.mean_ci(y, clusters),
        stats.paired_bootstrap(x, y, clusters),
        stats.mcnemar_exact(x, y) if binary else None,
        sd,
    )


def compare_to_target(store: RunStore, open_run: str, target: float, source: str) -> Comparison:
    """One-sample comparison of a run against a published score (no second model)."""
    a = load_scores(store, open_run)
    ids = sorted(a.scores)
    if len(ids) < 2:
        raise RunStoreError(f"run {a.run.run_id} has {len(ids)} scored items; need at least 2")
    values = [a.scores[i] for i in ids]
    estimate = stats.mean_ci(values, _clusters(a.clusters, ids))
    diff = replace(
        estimate,
        mean=estimate.mean - target,
        low=estimate.low - target,
        high=estimate.high - target,
    )
    sd = float(np.std(values, ddof=1))
    if sd == 0:  # every score equal: plan power with a smoothed Bernoulli SD instead of 0
        p = _smoothed_rate(values)
        sd = math.sqrt(p * (1 - p))
    exact = None
    if estimate.clusters is None and all(v in (0.0, 1.0) for v in values):
        exact = stats.binomial_tests(int(sum(values)), len(values), target, a.run.margin)
    return _finish(a, None, target, source, diff, estimate, None, None, None, sd, exact)


def _finish(a, b, target, source, diff, open_est, closed_est, bootstrap, p_mcnemar, sd, exact=None):
    margin = a.run.margin
    if exact is not None:  # 0/1 scores against a fixed target: exact binomial tests
        p_diff, p_eq = exact
    else:
        p_diff = p_mcnemar if p_mcnemar is not None else stats.difference_pvalue(diff)
        p_eq = stats.tost_pvalue(diff, margin)
    n = diff.n
    return Comparison(
        task=a.run.task,
        metric=a.run.metric,
        margin=margin,
        open=a,
        open_estimate=open_est,
        closed=b,
        closed_estimate=closed_est,
        target=target,
        target_source=source,
        diff=diff,
        bootstrap=bootstrap,
        p_mcnemar=p_mcnemar,
        p_difference=p_diff,
        p_equivalence=p_eq,
        sd=sd,
        detectable=stats.detectable_difference(sd, n),
        provable=stats.provable_margin(sd, n),
        verdict=stats.verdict(diff, p_diff, p_eq, margin, sd),
    )


def build_report(comparisons: list[Comparison], notes: list[str] | None = None) -> GapReport:
    """Apply Holm's correction across tasks and re-derive each verdict with it."""
    adjusted = stats.holm([c.p_difference for c in comparisons])
    final = []
    for c, p in zip(comparisons, adjusted, strict=True):
        v = stats.verdict(c.diff, p, c.p_equivalence, c.margin, c.sd)
        final.append(replace(c, p_difference_holm=p, verdict=v))
    notes = list(notes or [])
    for c in final:
        for side, scores in (("open", c.open), ("closed", c.closed)):
            pass_k = scores.pass_at_k() if scores else {}
            if len(pass_k) > 1:
                n = min(n for n, _ in scores.samples.values())
                listed = ", ".join(f"pass@{k} {v * 100:.1f}" for k, v in pass_k.items())
                notes.append(
                    f"{c.task}: {side} ({scores.run.model}), {n} samples per item: {listed}"
                )
        if "log-likelihood" in c.open.run.metric or (
            c.closed and "log-likelihood" in c.closed.run.metric
        ):
            notes.append(
                f"{c.task}: scored by log-likelihood of the choices; not comparable with"
                " generative scores (closed chat APIs cannot be scored this way)."
            )
        if c.fixture:
            notes.append(f"{c.task}: ran on a small fixture, not the real benchmark data.")
        if c.open.errors or c.open.missing:
            notes.append(
                f"{c.task}: {c.open.missing} of {len(c.open.scores) + c.open.missing}"
                " items unscored"
                f" ({c.open.errors} errors) in {c.open.run.run_id}; excluded, not counted wrong."
            )
        if c.provable > c.margin:
            notes.append(
                f"{c.task}: with n={c.diff.n} the smallest provable margin is"
                f" ±{c.provable * 100:.1f} points; the ±{c.margin * 100:.1f} margin cannot be"
                " proven at this size (80% power)."
            )
    return GapReport(final, notes=notes)


def _smoothed_rate(values: list[float]) -> float:
    """Laplace-smoothed mean: (sum + 1) / (n + 2), never exactly 0 or 1."""
    return (sum(values) + 1) / (len(values) + 2)


def _clusters(clusters: dict[str, str | None], ids: list[str]) -> list[str] | None:
    values = [clusters.get(i) for i in ids]
    if all(v is None for v in values):
        return None
    return [v if v is not None else f"item:{i}" for v, i in zip(values, ids, strict=True)]
