"""`openparity federated compare`: what the alliance buys. On one dataset split into members
(non-IID by a field, e.g. topic), the same base, LoRA, batch and learning rate:

  fedavg / fedprox   R rounds of S local steps per member (Flower's simulation engine), and
                     the judged alliance's strategy (`settings.strategy`) if it is another
  central            the pooled data for R x S x M steps (what pooling would give; the bound)
  member i alone     its own data for R x S steps (the compute it spends in the alliance)
  base               no training

Every arm's adapter is scored on the same held-out items of the coordinator's task (and of
each `also_eval` task: a second metric, e.g. a `reference_likelihood` task that measures what
the data taught when a 0/1 metric saturates), and the judged alliance is compared with every
other arm on those items, paired (Tango's score test and interval for 0/1 scores, the
cluster-robust t otherwise). It beats every member alone on a metric when all those intervals
are above 0 (an intersection-union test: no multiplicity correction is due for an "all"
claim; each metric's verdict stands alone).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from openparity.atomic import write_atomic
from openparity.federated.adapter import initial_state, save_adapter
from openparity.federated.alliance import anchored, simulate, simulation_settings
from openparity.federated.coordinator import (
    check_resumable,
    completed_rounds,
    read_history,
    tasks_scores,
)
from openparity.federated.errors import FederatedError
from openparity.federated.member import read_member_data, train_round
from openparity.federated.partition import split_members
from openparity.federated.settings import FederationSettings

ALLIANCES = ("fedavg", "fedprox")
ARM_FILE = "arm.json"  # a local arm's settings, written once its adapter is saved
# the settings a local arm's training depends on (one round of `local_steps` from the seed)
LOCAL_SETTINGS = (
    "base",
    "local_steps",
    "batch_size",
    "learning_rate",
    "lora_r",
    "lora_alpha",
    "max_length",
    "validation_share",
    "seed",
    "decontaminate",
)


@dataclass
class ArmResult:
    name: str
    target: str  # what `hf:` opens
    steps: int  # optimizer steps, all members together
    rounds: int
    bytes_per_round: int
    scores: dict[str, Any]  # task -> bench RunScores (the eval task first)

    def to_dict(self) -> dict[str, Any]:
        return {
            "arm": self.name,
            "model": f"hf:{self.target}",
            "steps": self.steps,
            "rounds": self.rounds,
            "bytes_per_round": self.bytes_per_round,
        }


def compare(
    settings: FederationSettings,
    source: Path,
    members: int,
    split: str,
    out: Path,
    on_line: Callable[[str], None],
    also_eval: Sequence[str] = (),
) -> dict[str, Any]:
    """Run every arm (each resumable: a finished arm is not trained again); the report."""
    from openparity.bench.tasks import get_task

    if not settings.eval_task:
        raise FederatedError("compare needs --eval-task (the held-out metric)")
    tasks = list(dict.fromkeys([settings.eval_task, *also_eval]))
    for task in tasks:
        get_task(task)  # an unknown task or a malformed file fails before anything trains
    settings = anchored(replace(settings, output=str(out)))
    paths = split_members(source, members, split, out / "members")
    store = out / "runs.sqlite"
    per_member = settings.rounds * settings.local_steps
    judged = settings.strategy
    strategies = ALLIANCES + (() if judged in ALLIANCES else (judged,))
    pooled = out / "members" / "pooled.jsonl"
    write_atomic(pooled, "".join(p.read_text(encoding="utf-8") for p in paths))
    local_arms = [("central", pooled, per_member * members)] + [
        (f"member {index} alone", path, per_member) for index, path in enumerate(paths)
    ]
    # an arm left by a run with other settings is refused before anything trains
    for strategy in strategies:
        check_resumable(simulation_settings(_alliance_settings(settings, strategy, paths), paths))
    for name, data, steps in local_arms:
        _check_local(out / _folder(name), _local_fingerprint(settings, data, steps))
    arms = [
        ArmResult(
            "base", settings.base, 0, 0, 0, tasks_scores(settings, tasks, settings.base, store)
        )
    ]
    for strategy in strategies:
        arms.append(_alliance(settings, strategy, paths, out, store, tasks, on_line))
    for name, data, steps in local_arms:
        arms.append(_local(name, settings, data, steps, out, store, tasks))
    report = _report(settings, arms, members, split, tasks)
    write_atomic(out / "compare.json", json.dumps(report, indent=2, ensure_ascii=False))
    return report


def _alliance(
    settings: FederationSettings,
    strategy: str,
    paths: list[Path],
    out: Path,
    store: Path,
    tasks: list[str],
    on_line: Callable[[str], None],
) -> ArmResult:
    run = out / strategy
    arm = _alliance_settings(settings, strategy, paths)
    final = run / "final"
    if not final.is_dir() or completed_rounds(run)[-1:] != [settings.rounds]:
        final = simulate(arm, paths, on_line)  # a run stopped midway continues
    history = read_history(run)
    skipped = [entry for entry in history if entry.get("skipped")]
    if skipped:  # its adapter missed those rounds' training: not a measure of the alliance
        first = skipped[0]
        raise FederatedError(
            f"{strategy}: round {first['round']} was skipped ({'; '.join(first['failed'])})",
            hint=f"remove {run}, raise --round-timeout if members were too slow, and run again",
        )
    adapter_bytes = history[-1].get("adapter_bytes", 0)
    return ArmResult(
        strategy,
        str(final),
        settings.rounds * settings.local_steps * len(paths),
        settings.rounds,
        2 * adapter_bytes * len(paths),
        tasks_scores(settings, tasks, str(final), store),
    )


def _alliance_settings(
    settings: FederationSettings, strategy: str, paths: list[Path]
) -> FederationSettings:
    run = Path(settings.output) / strategy
    return replace(
        settings, strategy=strategy, output=str(run), eval_task="", min_members=len(paths)
    )


def _local(
    name: str,
    settings: FederationSettings,
    data: Path,
    steps: int,
    out: Path,
    store: Path,
    tasks: list[str],
) -> ArmResult:
    """An arm trained on one file in one go; done once its `arm.json` (written last) is there."""
    directory = out / _folder(name)
    fingerprint = _local_fingerprint(settings, data, steps)
    if not _check_local(directory, fingerprint):
        local = replace(settings, local_steps=steps)
        member = read_member_data(str(data), local)
        state, _ = train_round(local, initial_state(local), member, server_round=1)
        save_adapter(local, state, directory)
        write_atomic(directory / ARM_FILE, json.dumps(fingerprint, indent=2, ensure_ascii=False))
    return ArmResult(
        name, str(directory), steps, 0, 0, tasks_scores(settings, tasks, str(directory), store)
    )


def _folder(name: str) -> str:
    return name.replace(" ", "-")


def _local_fingerprint(settings: FederationSettings, data: Path, steps: int) -> dict[str, Any]:
    """What a local arm's adapter depends on: its data and the training settings."""
    values = asdict(replace(settings, local_steps=steps))
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    return {"data_sha256": digest, **{name: values[name] for name in LOCAL_SETTINGS}}


def _check_local(directory: Path, fingerprint: dict[str, Any]) -> bool:
    """True when `directory` holds this arm, finished; False when it holds nothing finished;
    a FederatedError when it holds an arm trained otherwise."""
    path = directory / ARM_FILE
    if not path.is_file():
        return False
    saved = json.loads(path.read_text(encoding="utf-8"))
    differ = sorted(k for k in fingerprint if saved.get(k) != fingerprint[k])
    if differ:
        raise FederatedError(
            f"{directory} holds an arm trained with other settings ({', '.join(differ)})",
            hint="give a new --output, or the same settings to reuse it",
        )
    return True


def _report(
    settings: FederationSettings,
    arms: list[ArmResult],
    members: int,
    split: str,
    tasks: list[str],
) -> dict[str, Any]:
    """The eval task's table merged with each arm's training facts, then one table per
    `also_eval` task."""
    main, *more = (_table(task, settings.strategy, arms) for task in tasks)
    rows = [{**arm.to_dict(), **row} for arm, row in zip(arms, main["arms"], strict=True)]
    return {
        "task": settings.eval_task,
        "members": members,
        "split": split,
        "rounds": settings.rounds,
        "local_steps": settings.local_steps,
        "batch_size": settings.batch_size,
        "base": settings.base,
        "alliance": settings.strategy,
        "metric": main["metric"],
        "arms": rows,
        "best_member_alone": main["best_member_alone"],
        "alliance_beats_every_member_alone": main["alliance_beats_every_member_alone"],
        "also": more,
    }


def _table(task_name: str, judged: str, arms: list[ArmResult]) -> dict[str, Any]:
    """Every arm's score on one task, and the judged alliance minus each other arm, paired."""
    from openparity.bench import stats
    from openparity.bench.tasks import get_task

    task = get_task(task_name)
    alliance = next(arm.scores[task_name] for arm in arms if arm.name == judged)
    rows = []
    for arm in arms:
        scores = arm.scores[task_name]
        estimate = scores.estimate
        row = {
            "arm": arm.name,
            "score": estimate.mean,
            "low": estimate.low,
            "high": estimate.high,
            "n": estimate.n,
            "run_id": scores.run.run_id,
        }
        if arm.name != judged:
            items = sorted(set(alliance.scores) & set(scores.scores))
            tests = stats.paired_tests(
                [alliance.scores[i] for i in items],
                [scores.scores[i] for i in items],
                task.equivalence_margin,
                alliance.clusters_of(items),
            )
            row["alliance_minus_this"] = {
                "diff": tests.diff.mean,
                "low": tests.diff.low,
                "high": tests.diff.high,
                "no_interval": tests.diff.why_no_interval or None,
                "p": tests.p_difference,
                "method": tests.method,
                "n": len(items),
            }
        rows.append(row)
    alone = [row for row in rows if row["arm"].endswith("alone")]
    return {
        "task": task_name,
        "metric": task.metric,
        "arms": rows,
        "best_member_alone": max(alone, key=lambda row: row["score"])["arm"],
        "alliance_beats_every_member_alone": all(
            row["alliance_minus_this"]["low"] > 0 for row in alone
        ),
    }
