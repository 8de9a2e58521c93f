"""Comparisons: two runs over the same items (paired), or one run against a published score."""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field, replace

import numpy as np

from openparity.bench import stats
from openparity.bench.baselines import Published
from openparity.bench.errors import RunStoreError
from openparity.bench.store import RunInfo, RunStore
from openparity.bench.task import IN_ANSWER_PROCESS


@dataclass(frozen=True)
class RunScores:
    """Per-item scores of one run (mean over samples; errored items left out and counted)."""

    run: RunInfo
    scores: dict[str, float]
    clusters: dict[str, str | None]
    errors: int
    missing: int
    samples: dict[str, tuple[int, int]] = field(default_factory=dict)  # item: (n, correct)
    in_answer_process: int = 0  # items whose tests ran in the answer's own process (forgeable)

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
        return stats.mean_ci([self.scores[i] for i in ids], self.clusters_of(ids))

    def clusters_of(self, ids: list[str]) -> list[str] | None:
        """The cluster of each of `ids` (items sharing a context), for the paired statistics;
        None when no item has one."""
        return _clusters(self.clusters, ids)


@dataclass(frozen=True, kw_only=True)
class Comparison(abc.ABC):
    """Open model against a reference on one task: the difference, its tests, the verdict."""

    task: str
    metric: str
    margin: float
    open: RunScores
    open_estimate: stats.Estimate
    diff: stats.Estimate
    equivalence_interval: stats.Estimate | None  # the (1 - 2 alpha) interval the TOST inverts
    p_difference: float
    p_equivalence: float
    method: str  # the tests behind the p-values and the difference's interval
    sd: float  # per-item SD of the difference, for power planning
    detectable: float
    provable: float
    verdict: stats.Verdict
    exact_target: bool = False  # against a published number of unknown n, taken as exact
    fixed_var: float = 0.0  # the reference's own sampling variance, which more items keep
    p_difference_holm: float | None = None
    p_equivalence_holm: float | None = None

    @property
    @abc.abstractmethod
    def closed_mean(self) -> float:
        """The reference's score: the closed run's mean, or the published number."""

    @property
    @abc.abstractmethod
    def closed_interval(self) -> stats.Estimate | None:
        """The reference's own interval, when it has one."""

    @property
    def gap_ratio(self) -> float:
        """(closed - open) / closed, the seed's gap measure."""
        closed = self.closed_mean
        return (closed - self.open_estimate.mean) / closed if closed else math.nan

    @property
    def fixture(self) -> bool:
        return self.open.run.fixture


@dataclass(frozen=True, kw_only=True)
class PairedComparison(Comparison):
    """Two runs over the same items: a paired comparison."""

    closed: RunScores
    closed_estimate: stats.Estimate

    @property
    def closed_mean(self) -> float:
        return self.closed_estimate.mean

    @property
    def closed_interval(self) -> stats.Estimate:
        return self.closed_estimate

    @property
    def fixture(self) -> bool:
        return self.open.run.fixture or self.closed.run.fixture


@dataclass(frozen=True, kw_only=True)
class TargetComparison(Comparison):
    """One run against a published number: unpaired, the number from another test set run."""

    target: Published
    target_estimate: stats.Estimate | None  # the number's own interval, when its n is known

    @property
    def closed_mean(self) -> float:
        return self.target.score

    @property
    def closed_interval(self) -> stats.Estimate | None:
        return self.target_estimate


def load_scores(store: RunStore, run_id: str) -> RunScores:
    run = store.get_run(run_id)
    per_item: dict[str, list[float]] = {}
    clusters: dict[str, str | None] = {}
    errors = 0
    shared_process: set[str] = set()
    for record in store.records(run.run_id):
        if not record.ok:
            errors += 1
            continue
        per_item.setdefault(record.item_id, []).append(float(record.score))
        clusters[record.item_id] = record.cluster
        if (record.detail or "").startswith(IN_ANSWER_PROCESS):
            shared_process.add(record.item_id)
    scores = {item: sum(v) / len(v) for item, v in per_item.items()}
    missing = len(set(run.item_ids) - set(scores))
    if run.settings.get("circular"):
        return _circular_scores(run, scores, errors)
    samples = {}
    if run.settings.get("samples", 1) > 1 and all(
        x in (0.0, 1.0) for v in per_item.values() for x in v
    ):
        samples = {item: (len(v), int(sum(v))) for item, v in per_item.items()}
    return RunScores(run, scores, clusters, errors, missing, samples, len(shared_process))


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


def compare_runs(store: RunStore, open_run: str, closed_run: str) -> PairedComparison:
    """Paired comparison over the items both runs scored."""
    return compare_scores(load_scores(store, open_run), load_scores(store, closed_run))


def compare_scores(a: RunScores, b: RunScores) -> PairedComparison:
    """Paired comparison of two runs' per-item scores over the items both scored."""
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
    tests = stats.paired_tests(x, y, a.run.margin, clusters)
    sd = _planning_sd(list(np.subtract(x, y)), clusters)
    if sd == 0:  # identical answers so far: plan power with correlated 0/1 scores instead
        sd = stats.paired_sd(_smoothed_rate(x + y), correlation=0.5)
    return PairedComparison(
        **_common(a, tests, sd, stats.mean_ci(x, clusters)),
        closed=b,
        closed_estimate=stats.mean_ci(y, clusters),
    )


def compare_to_target(store: RunStore, open_run: str, target: Published) -> TargetComparison:
    """Unpaired comparison of a run with a published score (no second model run here)."""
    a = load_scores(store, open_run)
    ids = sorted(a.scores)
    if len(ids) < 2:
        raise RunStoreError(f"run {a.run.run_id} has {len(ids)} scored items; need at least 2")
    values = [a.scores[i] for i in ids]
    clusters = _clusters(a.clusters, ids)
    tests = stats.target_tests(values, target.score, a.run.margin, target.n, clusters)
    sd = _planning_sd(values, clusters)
    if sd == 0:  # every score equal: plan power with a smoothed Bernoulli SD instead of 0
        p = _smoothed_rate(values)
        sd = math.sqrt(p * (1 - p))
    target_estimate = stats.published_interval(target.score, target.n) if target.n else None
    fixed_var = target.score * (1 - target.score) / target.n if target.n else 0.0
    return TargetComparison(
        **_common(a, tests, sd, stats.mean_ci(values, clusters), target.n is None, fixed_var),
        target=target,
        target_estimate=target_estimate,
    )


def compare_to_reference(
    store: RunStore, run_id: str, closed_run: str | None, target: Published | None
) -> Comparison | None:
    """A run against the closed side: its closed run (paired) when there is one, else the
    published target, else None."""
    if closed_run is not None:
        return compare_runs(store, run_id, closed_run)
    if target is not None:
        return compare_to_target(store, run_id, target)
    return None


def _common(
    a: RunScores,
    tests: stats.Tests,
    sd: float,
    open_estimate: stats.Estimate,
    exact_target: bool = False,
    fixed_var: float = 0.0,
) -> dict:
    """The fields every comparison has, from the open run and the tests. `fixed_var`: the
    reference's own sampling variance (a published number's), which more items do not
    shrink."""
    n, margin = tests.diff.n, a.run.margin
    return {
        "task": a.run.task,
        "metric": a.run.metric,
        "margin": margin,
        "open": a,
        "open_estimate": open_estimate,
        "diff": tests.diff,
        "equivalence_interval": tests.equivalence_interval,
        "p_difference": tests.p_difference,
        "p_equivalence": tests.p_equivalence,
        "method": tests.method,
        "sd": sd,
        "detectable": stats.detectable_difference(sd, n, fixed_var=fixed_var),
        "provable": stats.provable_margin(sd, n, fixed_var=fixed_var),
        "exact_target": exact_target,
        "fixed_var": fixed_var,
        "verdict": rederived_verdict(
            tests.diff,
            tests.p_difference,
            tests.p_equivalence,
            margin,
            sd,
            tests.equivalence_interval,
            exact_target,
            fixed_var,
            a.run.settings.get("task_items"),
        ),
    }


def rederived_verdict(
    diff: stats.Estimate,
    p_difference: float,
    p_equivalence: float,
    margin: float,
    sd: float,
    equivalence: stats.Estimate | None,
    exact_target: bool,
    fixed_var: float = 0.0,
    available: int | None = None,
) -> stats.Verdict:
    """The verdict; against a published number of unknown n it says that the number was
    taken as exact (its own sampling error is not in the test, so the test is too bold).
    `available`: the task's number of items, when the run recorded it."""
    found = stats.verdict(
        diff,
        p_difference,
        p_equivalence,
        margin,
        sd,
        equivalence=equivalence,
        fixed_var=fixed_var,
        available=available,
    )
    if exact_target:
        why = found.explanation + "; assumes the published number is exact (its n is unknown)"
        return replace(found, explanation=why)
    return found


def _planning_sd(values: list[float], clusters: list[str] | None) -> float:
    """Per-item SD for power planning. Where items share a context it carries the design
    effect (the cluster-robust variance of the mean against the naive one): 15 clustered
    items are worth fewer than 15 independent ones."""
    sd = float(np.std(values, ddof=1))
    if stats.independent_items(clusters, len(values)):
        return sd
    est = stats.cluster_robust(values, clusters)
    return est.se * math.sqrt(len(values)) if est.se > 0 else sd


def _smoothed_rate(values: list[float]) -> float:
    """Laplace-smoothed mean: (sum + 1) / (n + 2), never exactly 0 or 1."""
    return (sum(values) + 1) / (len(values) + 2)


def _clusters(clusters: dict[str, str | None], ids: list[str]) -> list[str] | None:
    values = [clusters.get(i) for i in ids]
    if all(v is None for v in values):
        return None
    return [v if v is not None else f"item:{i}" for v, i in zip(values, ids, strict=True)]
