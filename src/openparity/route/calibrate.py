"""Calibrating the first tier's checks on a harness run, with a statistical guarantee.

Given a run of the open model (each answer right or wrong, and what every check says of it),
choose thresholds such that, with probability at least 1 - delta over the calibration items,
the risk of serving an accepted but wrong answer is at most epsilon:

- risk "joint" (default): P(accepted and wrong) per request. Candidate thresholds form one
  path from strictest to loosest (each tunable check at the same quantile level of its scores),
  so the risk only grows along it; fixed-sequence testing with an exact Clopper-Pearson upper
  bound at each step controls the error at delta without a multiplicity correction (the
  Learn-then-Test procedure of Angelopoulos et al., 2021).
- risk "conditional": P(wrong | accepted), which is not monotone along the path: each level
  is tested at delta / (number of levels) (Bonferroni), and the loosest that passes is kept.

Checks that call models (judge, self-consistency) cannot be replayed from a stored run: they are
left out of calibration; adding them in production only rejects more answers, so the joint
guarantee still holds.

The guarantee is over items drawn like the run's items (one task, one prompt setting). Several
samples of one item are not independent evidence: a run with --samples > 1 is calibrated on one
sample per item, drawn at random (seeded by the run id), so each Bernoulli trial is one item.
The guarantee says, in the output and in the written config, where it was earned.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from openparity.bench.store import Record, RunInfo, RunStore
from openparity.bench.task import PromptSettings
from openparity.errors import OpenparityError
from openparity.models import resolve_model
from openparity.models.types import ChatRequest, Completion
from openparity.route.checks import Answer, Check
from openparity.route.config import Calibration, GatewayConfig

LEVELS = np.round(np.linspace(1.0, 0.0, 101), 2)  # quantile levels, strictest first


class CalibrationError(OpenparityError):
    """The run cannot calibrate this gateway (no records, missing logprobs...)."""


@dataclass(frozen=True)
class PathPoint:
    level: float
    thresholds: dict[str, float]
    accepted: int
    accepted_wrong: int
    upper_bound: float


@dataclass(frozen=True)
class CalibrationResult:
    run_id: str
    task: str
    model: str
    items: int
    epsilon: float
    delta: float
    risk: str
    settings: dict[str, Any]  # how the run's items were asked: where the guarantee was earned
    feasible: bool
    thresholds: dict[str, float]
    accepted: int
    accepted_wrong: int
    upper_bound: float
    open_share: float
    accuracy: float  # of the open model on the whole run
    accuracy_accepted: float | None
    saving_share: float | None  # hybrid cost vs all-closed, at this open share
    path: list[PathPoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"guarantee": self.guarantee}

    @property
    def guarantee(self) -> str:
        """What was guaranteed, and for which traffic."""
        what = "P(accepted and wrong)" if self.risk == "joint" else "P(wrong | accepted)"
        asked = ", ".join(f"{k} {v}" for k, v in self.settings.items())
        return (
            f"{what} <= {self.epsilon:g} with probability >= {1 - self.delta:g}, for requests"
            f" like the {self.items} {self.task} items of run {self.run_id} ({asked});"
            " it does not transfer to other tasks, prompts or traffic"
        )


def clopper_pearson_upper(k: int, n: int, delta: float) -> float:
    """Exact one-sided (1 - delta) upper confidence bound of a binomial rate."""
    if n == 0:
        return 1.0
    if k >= n:
        return 1.0
    return float(stats.beta.ppf(1 - delta, k + 1, n - k))


def calibrate_run(
    store: RunStore,
    run_id: str,
    config: GatewayConfig,
    *,
    epsilon: float = 0.02,
    delta: float = 0.05,
    risk: str = "joint",
    correct_at: float = 0.5,
) -> CalibrationResult:
    """Thresholds for the first tier's tunable checks from the run `run_id`."""
    if risk not in ("joint", "conditional"):
        raise CalibrationError(f"unknown risk {risk!r}", hint="use joint or conditional")
    if not (0 < epsilon < 1 and 0 < delta < 1):
        raise CalibrationError("epsilon and delta must lie strictly between 0 and 1")
    run = store.get_run(run_id)
    notes: list[str] = []
    records = one_sample_per_item([r for r in store.records(run_id) if r.ok], run.run_id, notes)
    if not records:
        raise CalibrationError(
            f"run {run_id} has no scored answers", hint="finish it first (bench run --resume)"
        )
    tier = config.tiers[0]
    if run.model != resolve_model(tier.model, models_file=config.models_file).name:
        notes.append(f"the run is of {run.model}, the first tier is {tier.model}")
    answers = _answers(run, records, notes)
    fixed = [c for c in tier.checks if c.threshold_field is None and not c.calls_models]
    tunable = [c for c in tier.checks if c.threshold_field is not None]
    skipped = [c.name for c in tier.checks if c.calls_models]
    if skipped:
        notes.append(f"not replayable from a run, left out: {', '.join(skipped)}")
    wrong = np.array([(r.score or 0.0) < correct_at for r in records])
    passes_fixed = np.array([all(c.check(a).passed for c in fixed) for a in answers], dtype=bool)
    scores = {c.name: _scores(c, answers, run_id) for c in tunable}
    path, chosen = select_thresholds(scores, passes_fixed, wrong, epsilon, delta, risk)
    n = len(records)
    accepted = chosen.accepted if chosen else 0
    mask = _accepted(scores, passes_fixed, chosen.thresholds if chosen else None)
    return CalibrationResult(
        run_id=run_id,
        task=run.task,
        model=run.model,
        items=n,
        epsilon=epsilon,
        delta=delta,
        risk=risk,
        settings=_prompt_settings(run),
        feasible=chosen is not None and accepted > 0,
        thresholds=chosen.thresholds if chosen else {},
        accepted=accepted,
        accepted_wrong=chosen.accepted_wrong if chosen else 0,
        upper_bound=chosen.upper_bound if chosen else 1.0,
        open_share=accepted / n,
        accuracy=float(1 - wrong.mean()),
        accuracy_accepted=float(1 - wrong[mask].mean()) if mask.any() else None,
        saving_share=_saving(config, records, accepted / n, notes),
        path=path,
        notes=notes,
    )


def apply(config: GatewayConfig, result: CalibrationResult) -> GatewayConfig:
    """The config with the first tier's thresholds replaced and the guarantee recorded."""
    first = config.tiers[0]
    checks: list[Check] = [
        c.with_threshold(result.thresholds[c.name]) if c.name in result.thresholds else c
        for c in first.checks
    ]
    tiers = [first.model_copy(update={"checks": checks}), *config.tiers[1:]]
    calibration = Calibration(
        run_id=result.run_id,
        task=result.task,
        items=result.items,
        epsilon=result.epsilon,
        delta=result.delta,
        risk=result.risk,
        upper_bound=round(result.upper_bound, 6),
        open_share=round(result.open_share, 6),
        saving_share=None if result.saving_share is None else round(result.saving_share, 6),
        settings=result.settings,
        guarantee=result.guarantee,
    )
    return config.model_copy(update={"tiers": tiers, "calibration": calibration})


def _answers(run: RunInfo, records: list[Record], notes: list[str]) -> list[Answer]:
    """Each record as the checks would have seen it live: the task's request, the answer."""
    requests = _requests(run, records, notes)
    return [
        Answer(
            request=requests.get((r.item_id, r.sample)) or ChatRequest(messages=[]),
            completion=Completion(
                text=r.response or "",
                finish_reason=r.finish_reason or "stop",
                prompt_tokens=r.prompt_tokens or 0,
                completion_tokens=r.completion_tokens or 0,
                latency_s=r.latency_s or 0.0,
                model=run.model,
                cost_usd=r.cost_usd,
            ),
            recorded_logprob=r.mean_logprob,
        )
        for r in records
    ]


def _requests(
    run: RunInfo, records: list[Record], notes: list[str]
) -> dict[tuple[str, int], ChatRequest]:
    from openparity.bench.tasks import get_task

    try:
        task = get_task(run.task, fixture=run.fixture)
        settings = PromptSettings.from_run(run.settings)
        items = {i.id: i for i in task.items()}
        return {
            (r.item_id, r.sample): task.request(items[r.item_id], settings, r.sample)
            for r in records
            if r.item_id in items
        }
    except (OpenparityError, KeyError, TypeError) as exc:
        notes.append(f"task prompts unavailable ({exc}): prompt-dependent checks see no prompt")
        return {}


def _prompt_settings(run: RunInfo) -> dict[str, Any]:
    return PromptSettings.from_run(run.settings).as_dict()


def one_sample_per_item(records: list[Record], seed_text: str, notes: list[str]) -> list[Record]:
    """One record per item, the sample drawn at random (seeded by `seed_text`): samples of one
    item share its difficulty, so only items are independent trials of the guarantee."""
    by_item: dict[str, list[Record]] = {}
    for record in records:
        by_item.setdefault(record.item_id, []).append(record)
    if all(len(v) == 1 for v in by_item.values()):
        return records
    seed = int.from_bytes(hashlib.sha256(seed_text.encode()).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    chosen = [group[int(rng.integers(len(group)))] for _, group in sorted(by_item.items())]
    notes.append(
        f"{len(records)} answers to {len(chosen)} items: calibrated on one answer per item,"
        " drawn at random (samples of one item are not independent evidence)"
    )
    return chosen


def _scores(check: Check, answers: list[Answer], run_id: str) -> np.ndarray:
    values = [check.score(a) for a in answers]
    if all(v is None for v in values):
        raise CalibrationError(
            f"run {run_id} has no data for the {check.name} check",
            hint="re-run the harness with --logprobs (openparity bench run ... --logprobs)",
        )
    return np.array([-np.inf if v is None else v for v in values], dtype=float)


def _accepted(
    scores: dict[str, np.ndarray], passes_fixed: np.ndarray, thresholds: dict[str, float] | None
) -> np.ndarray:
    if thresholds is None:
        return np.zeros_like(passes_fixed)
    mask = passes_fixed.copy()
    for name, values in scores.items():
        mask &= values >= thresholds[name]
    return mask


def select_thresholds(
    scores: dict[str, np.ndarray],
    passes_fixed: np.ndarray,
    wrong: np.ndarray,
    epsilon: float,
    delta: float,
    risk: str = "joint",
) -> tuple[list[PathPoint], PathPoint | None]:
    """The threshold path (strictest first) over independent trials, and the point chosen."""
    levels = LEVELS if scores else np.array([0.0])
    level_delta = delta if risk == "joint" else delta / len(levels)
    path = []
    for level in levels:
        thresholds = {
            name: float(np.quantile(values[np.isfinite(values)], level))
            for name, values in scores.items()
        }
        mask = _accepted(scores, passes_fixed, thresholds)
        k = int((mask & wrong).sum())
        n = len(wrong) if risk == "joint" else int(mask.sum())
        path.append(
            PathPoint(
                float(level),
                thresholds,
                int(mask.sum()),
                k,
                clopper_pearson_upper(k, n, level_delta),
            )
        )
    return path, _choose(path, epsilon, risk)


def _choose(path: list[PathPoint], epsilon: float, risk: str) -> PathPoint | None:
    if risk == "joint":  # fixed sequence: stop at the first level that fails
        chosen = None
        for point in path:
            if point.upper_bound > epsilon:
                break
            chosen = point
        return chosen
    passing = [p for p in path if p.upper_bound <= epsilon]
    return max(passing, key=lambda p: p.accepted) if passing else None


def _saving(
    config: GatewayConfig, records: list[Record], share: float, notes: list[str]
) -> float | None:
    """1 - (open always tried + closed on fallbacks) / (closed for everything), priced with the
    run's token counts (the closed model's own counts would differ somewhat)."""
    if len(config.tiers) < 2:
        return None
    closed = resolve_model(config.tiers[-1].model, models_file=config.models_file)
    if closed.price is None:
        notes.append(f"no price for {closed.name}: no saving estimate")
        return None
    closed_cost = sum(
        closed.cost(r.prompt_tokens or 0, r.completion_tokens or 0) or 0.0 for r in records
    )
    open_cost = sum(r.cost_usd or 0.0 for r in records)
    if not closed_cost:
        return None
    return 1 - (open_cost + (1 - share) * closed_cost) / closed_cost


def render(result: CalibrationResult) -> None:
    from rich.markup import escape

    from openparity.console import out

    out.print(
        f"[bold]calibration[/] of {result.model} on {result.task} ({result.items} items,"
        f" accuracy {result.accuracy:.1%})"
    )
    out.print(f"guarantee: {escape(result.guarantee)}")
    if not result.feasible:
        out.print(
            "[red]no threshold meets the guarantee[/]: the open tier would serve nothing."
            " Loosen epsilon, add calibration items, or improve the open model."
        )
    else:
        for name, value in result.thresholds.items():
            out.print(f"  {name}: threshold {value:.4g}")
        accuracy = result.accuracy_accepted
        out.print(
            f"open share {result.open_share:.1%} ({result.accepted}/{result.items});"
            f" accepted and wrong {result.accepted_wrong}, upper bound {result.upper_bound:.4f}"
            + (f"; accuracy of accepted answers {accuracy:.1%}" if accuracy is not None else "")
        )
        if result.saving_share is not None:
            out.print(f"expected cost saving vs all-closed: {result.saving_share:.1%}")
    for note in result.notes:
        out.print(f"note: {note}")
