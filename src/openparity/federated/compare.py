"""`openparity federated compare`: what the alliance buys. On one dataset split into members
(non-IID by a field, e.g. topic), the same base, LoRA, batch and learning rate:

  fedavg / fedprox   R rounds of S local steps per member (Flower's simulation engine), and
                     the judged alliance's strategy (`settings.strategy`) if it is another
  central            the pooled data for R x S x M steps (what pooling would give; the bound)
  member i alone     its own data for R x S steps (the compute it spends in the alliance)
  base               no training

Every arm's adapter is scored on the same held-out items of the coordinator's task, and the
judged alliance is compared with every other arm on those items, paired (exact McNemar and
Tango's interval for 0/1 scores, the cluster-robust t otherwise). It beats every member alone
when all those intervals are above 0 (an intersection-union test: no multiplicity correction
is due for an "all" claim).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from openparity.atomic import write_atomic
from openparity.federated.adapter import initial_state, save_adapter
from openparity.federated.alliance import anchored, simulate
from openparity.federated.coordinator import harness_scores, read_history
from openparity.federated.errors import FederatedError
from openparity.federated.member import read_member_data, train_round
from openparity.federated.partition import split_members
from openparity.federated.settings import FederationSettings

ALLIANCES = ("fedavg", "fedprox")


@dataclass
class ArmResult:
    name: str
    target: str  # what `hf:` opens
    steps: int  # optimizer steps, all members together
    rounds: int
    bytes_per_round: int
    scores: Any  # bench RunScores

    def to_dict(self) -> dict[str, Any]:
        estimate = self.scores.estimate
        return {
            "arm": self.name, "model": f"hf:{self.target}", "steps": self.steps,
            "rounds": self.rounds, "bytes_per_round": self.bytes_per_round,
            "score": estimate.mean, "low": estimate.low, "high": estimate.high, "n": estimate.n,
            "run_id": self.scores.run.run_id,
        }  # fmt: skip


def compare(
    settings: FederationSettings, source: Path, members: int, split: str, out: Path,
    on_line: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    """Run every arm (each resumable: a finished arm is not trained again); the report."""
    if not settings.eval_task:
        raise FederatedError("compare needs --eval-task (the held-out metric)")
    settings = anchored(replace(settings, output=str(out)))
    paths = split_members(source, members, split, out / "members")
    store = out / "runs.sqlite"
    scored = replace(settings, eval_task=settings.eval_task)
    arms = [ArmResult("base", settings.base, 0, 0, 0,
                      harness_scores(scored, settings.base, store))]  # fmt: skip
    per_member = settings.rounds * settings.local_steps
    judged = settings.strategy
    for strategy in ALLIANCES + (() if judged in ALLIANCES else (judged,)):
        arms.append(_alliance(settings, strategy, paths, out, store, on_line))
    pooled = out / "members" / "pooled.jsonl"
    write_atomic(pooled, "".join(p.read_text(encoding="utf-8") for p in paths))
    arms.append(_local("central", settings, pooled, per_member * members, out, store))
    for index, path in enumerate(paths):
        arms.append(_local(f"member {index} alone", settings, path, per_member, out, store))
    report = _report(settings, arms, members, split)
    write_atomic(out / "compare.json", json.dumps(report, indent=2, ensure_ascii=False))
    return report


def _alliance(
    settings: FederationSettings, strategy: str, paths: list[Path], out: Path, store: Path,
    on_line: Callable[[str], None],
) -> ArmResult:  # fmt: skip
    run = out / strategy
    arm = replace(settings, strategy=strategy, output=str(run), eval_task="",
                  min_members=len(paths))  # fmt: skip
    final = run / "final"
    if not final.is_dir():
        final = simulate(arm, paths, on_line)
    history = read_history(run)
    skipped = [entry for entry in history if entry.get("skipped")]
    if skipped:  # its adapter missed those rounds' training: not a measure of the alliance
        first = skipped[0]
        raise FederatedError(
            f"{strategy}: round {first['round']} was skipped ({'; '.join(first['failed'])})",
            hint=f"remove {run}, raise --round-timeout if members were too slow, and run again",
        )
    adapter_bytes = history[-1].get("adapter_bytes", 0)
    return ArmResult(strategy, str(final), settings.rounds * settings.local_steps * len(paths),
                     settings.rounds, 2 * adapter_bytes * len(paths),
                     harness_scores(settings, str(final), store))  # fmt: skip


def _local(
    name: str, settings: FederationSettings, data: Path, steps: int, out: Path, store: Path
) -> ArmResult:
    directory = out / name.replace(" ", "-")
    if not (directory / "adapter_config.json").is_file():
        local = replace(settings, local_steps=steps)
        member = read_member_data(str(data), local)
        state, _ = train_round(local, initial_state(local), member, server_round=1)
        save_adapter(local, state, directory)
    return ArmResult(name, str(directory), steps, 0, 0,
                     harness_scores(settings, str(directory), store))  # fmt: skip


def _report(
    settings: FederationSettings, arms: list[ArmResult], members: int, split: str
) -> dict[str, Any]:
    from openparity.bench import stats
    from openparity.bench.tasks import get_task

    margin = get_task(settings.eval_task).equivalence_margin
    rows = [arm.to_dict() for arm in arms]
    alliance = next(arm for arm in arms if arm.name == settings.strategy)
    for row, arm in zip(rows, arms, strict=True):
        if arm is alliance:
            continue
        items = sorted(set(alliance.scores.scores) & set(arm.scores.scores))
        tests = stats.paired_tests(
            [alliance.scores.scores[i] for i in items], [arm.scores.scores[i] for i in items],
            margin,
        )  # fmt: skip
        row["alliance_minus_this"] = {
            "diff": tests.diff.mean, "low": tests.diff.low, "high": tests.diff.high,
            "p": tests.p_difference, "method": tests.method, "n": len(items),
        }  # fmt: skip
    alone = [r for r in rows if r["arm"].endswith("alone")]
    best = max(alone, key=lambda r: r["score"])
    return {
        "task": settings.eval_task, "members": members, "split": split,
        "rounds": settings.rounds, "local_steps": settings.local_steps,
        "batch_size": settings.batch_size, "base": settings.base,
        "alliance": settings.strategy, "arms": rows,
        "best_member_alone": best["arm"],
        "alliance_beats_every_member_alone": all(
            r["alliance_minus_this"]["low"] > 0 for r in alone
        ),
    }  # fmt: skip
