"""The coordinator's side: the strategy, the rounds, what is saved after each, the resume.

Layout of the run directory (`output`):
  settings.json          the settings the alliance was started with (a resume must match)
  rounds/NNNN/           the global adapter after round N (a PEFT directory) + round.json
                         (+ server_state.safetensors: FedAvgM's momentum or FedAdam's
                         moments, so a restart continues with them)
  history.json           every round's metrics: members, losses, bytes, the global score
  final/                 the last round's adapter: `hf:OUTPUT/final` opens it
  runs.sqlite            the harness runs of the global evaluations
A round's directory is complete once its round.json exists (it is written last); a restarted
coordinator continues after the last complete round.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openparity.atomic import write_atomic
from openparity.federated.adapter import initial_state, save_adapter
from openparity.federated.errors import FederatedError
from openparity.federated.privacy import WEIGHT_KEY, spent
from openparity.federated.settings import FederationSettings

log = logging.getLogger("flwr")  # the ServerApp's log lines reach `flwr run --stream`
ROUND_FILE = "round.json"
SERVER_STATE_FILE = "server_state.safetensors"
LEGACY_MOMENTUM_FILE = "server_momentum.safetensors"  # FedAvgM's, before FedAdam's were kept
RESUMABLE = ("rounds",)  # settings a restarted coordinator may change


class RoundLog:
    """What the members reported in the round under way (fed by the strategy's aggregators)."""

    def __init__(self) -> None:
        self.current: dict[str, Any] = {}

    def train(self, records: list[Any], weighting: str) -> Any:
        return self._aggregate("train", records, weighting)

    def evaluate(self, records: list[Any], weighting: str) -> Any:
        return self._aggregate("validation", records, weighting)

    def _aggregate(self, phase: str, records: list[Any], weighting: str) -> Any:
        from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

        aggregated = aggregate_metricrecords(records, weighting)
        self.current[phase] = {
            "members": len(records),
            **{k: float(v) for k, v in aggregated.items() if k != WEIGHT_KEY},
        }
        return aggregated


def guarded(strategy_cls: type) -> type:
    """`strategy_cls` that drops failed replies and skips a round with fewer than its minimum
    of members (the global adapter then stays as it was); failures are counted, not scored."""

    class Guarded(strategy_cls):  # type: ignore[misc, valid-type]
        round_log: RoundLog
        needed: int = 1  # members a round needs
        wait_s: float = 600.0
        asked: int = 0  # members asked to train this round

        def configure_train(self, server_round: int, arrays: Any, config: Any, grid: Any) -> Any:
            _await_members(grid, self.needed, self.wait_s)
            messages = list(super().configure_train(server_round, arrays, config, grid))
            self.asked = len(messages)
            return messages

        def configure_evaluate(self, server_round: int, arrays: Any, config: Any, grid: Any):
            _await_members(grid, self.needed, self.wait_s)
            return super().configure_evaluate(server_round, arrays, config, grid)

        def aggregate_train(self, server_round: int, replies: Any) -> Any:
            replies = list(replies)
            ok = [m for m in replies if not m.has_error()]
            failed = [_last_line(m.error.reason) for m in replies if m.has_error()]
            silent = self.asked - len(replies)  # Flower stops waiting after the round timeout
            failed += [f"no reply within the round timeout ({self.wait_s:g} s)"] * silent
            self.round_log.current["failed"] = failed
            if len(ok) < self.needed:
                log.warning(
                    "round %d: %d of %d members answered, fewer than %d: the global"
                    " adapter is kept",
                    server_round,
                    len(ok),
                    self.asked,
                    self.needed,
                )
                self.round_log.current["skipped"] = True
                return None, None
            return super().aggregate_train(server_round, ok)

        def aggregate_evaluate(self, server_round: int, replies: Any) -> Any:
            ok = [m for m in replies if not m.has_error()]
            return super().aggregate_evaluate(server_round, ok) if ok else None

    Guarded.__name__ = strategy_cls.__name__
    return Guarded


def make_strategy(settings: FederationSettings, round_log: RoundLog, done: int = 0) -> Any:
    """The guarded strategy of `settings`, wrapped for DP when `dp_noise` is set (`done`:
    rounds an earlier process finished, whose privacy cost is already spent)."""
    from flwr.serverapp.strategy import (
        DifferentialPrivacyClientSideFixedClipping,
        FedAdam,
        FedAvg,
        FedAvgM,
        FedProx,
    )

    from openparity.federated.privacy import private_strategy

    private = settings.dp_noise > 0
    common = {
        # under DP every round samples exactly min_members (the accountant's sample size)
        "fraction_train": 1e-9 if private else settings.fraction,
        "fraction_evaluate": settings.fraction if settings.validation_share > 0 else 0.0,
        "min_train_nodes": settings.min_members,
        "min_evaluate_nodes": settings.min_members,
        "min_available_nodes": settings.min_members,
        "train_metrics_aggr_fn": round_log.train,
        "evaluate_metrics_aggr_fn": round_log.evaluate,
        "weighted_by_key": weight_key(settings),
    }
    kinds = {
        "fedprox": FedProx,
        "fedadam": counting_rounds_after(FedAdam, done),
        "fedavg": FedAvg,
        "fedavgm": FedAvgM,
    }
    options = {
        "fedprox": {"proximal_mu": settings.proximal_mu},
        "fedadam": {"eta": settings.server_lr, "tau": 1e-6},
        "fedavgm": {
            "server_learning_rate": settings.server_step,
            "server_momentum": settings.server_momentum,
        },
    }
    kind, extra = kinds[settings.strategy], options.get(settings.strategy, {})
    if private:
        inner = kind(**common, **extra)
        strategy = private_strategy(
            guarded(DifferentialPrivacyClientSideFixedClipping), inner, settings, done
        )
    else:
        strategy = guarded(kind)(**common, **extra)
    strategy.round_log, strategy.needed = round_log, settings.min_members
    strategy.wait_s = settings.round_timeout
    return strategy


def counting_rounds_after(fedadam_cls: type, done: int) -> type:
    """FedAdam whose bias correction (a function of the round number) goes on counting after
    the `done` rounds of an earlier process, as one uninterrupted run counts."""

    class Resumed(fedadam_cls):  # type: ignore[misc, valid-type]
        def aggregate_train(self, server_round: int, replies: Any) -> Any:
            return super().aggregate_train(done + server_round, replies)

    Resumed.__name__ = fedadam_cls.__name__
    return Resumed


def weight_key(settings: FederationSettings) -> str:
    """The metric members are averaged by: examples, or 1 each under DP."""
    return WEIGHT_KEY if settings.dp_noise > 0 else "num-examples"


def _await_members(grid: Any, needed: int, wait_s: float) -> None:
    """Return once `needed` members are connected; a clear stop after `wait_s` (Flower itself
    would wait forever). Rounds already saved stay; a restart continues after them."""
    deadline = time.monotonic() + wait_s
    while (connected := len(list(grid.get_node_ids()))) < needed:
        if time.monotonic() > deadline:
            raise FederatedError(
                f"{connected} of the {needed} members a round needs are connected after"
                f" waiting {wait_s:g} s",
                hint="start the missing members (or lower --min-members), then run again with"
                " the same --output to continue after the last saved round",
            )
        time.sleep(1)


class Coordinator:
    """Runs the rounds on a Flower Grid and keeps every round on disk."""

    def __init__(self, settings: FederationSettings) -> None:
        self.settings = settings
        self.output = Path(settings.output)
        self.round_log = RoundLog()
        self.history: list[dict[str, Any]] = []
        self.offset = 0
        self.round_started = time.monotonic()
        self.strategy: Any = None
        self.grid: Any = None

    def run(self, grid: Any) -> Path:
        """Every round not yet done; the final adapter's directory."""
        import random

        from flwr.app import ArrayRecord, ConfigRecord

        random.seed(self.settings.seed)  # Flower samples members with `random`
        state = self._start()
        remaining = self.settings.rounds - self.offset
        if remaining > 0:
            self.strategy = make_strategy(self.settings, self.round_log, self.offset)
            strategy = self.strategy
            _restore_server_state(strategy, round_dir(self.output, self.offset), list(state))
            self.grid = self._secured(grid)
            strategy.start(
                grid=self.grid,
                initial_arrays=ArrayRecord(state),
                num_rounds=remaining,
                timeout=self.settings.round_timeout,
                train_config=ConfigRecord({"round-offset": self.offset}),
                evaluate_config=ConfigRecord({"round-offset": self.offset}),
                evaluate_fn=self._after_round,
            )
        return self._finish()

    def _refuse_if_no_round_aggregated(self) -> None:
        """Every round of the run was skipped (too few members answered): the global adapter
        never moved, so the run failed; say why the members failed, from their replies."""
        rounds = [entry for entry in self.history if entry.get("round", 0) > 0]
        if not rounds or not all(entry.get("skipped") for entry in rounds):
            return
        reasons = Counter(reason for entry in rounds for reason in entry.get("failed", ()))
        said = "; ".join(f"{reason} ({count}x)" for reason, count in reasons.most_common(3))
        raise FederatedError(
            f"no round succeeded: all {len(rounds)} were skipped, too few members answered;"
            f" the members said: {said or 'nothing'}",
            hint="fix the members' data or settings, then run again with the same --output",
        )

    def _secured(self, grid: Any) -> Any:
        """`grid`, its training rounds run under SecAgg+ when the settings ask for it."""
        if not self.settings.secure:
            return grid
        from openparity.federated.secure import SecureGrid

        settings = self.settings
        return SecureGrid(
            grid,
            weight_key(settings),
            settings.secure_threshold,
            settings.secure_max_weight,
            settings.round_timeout,
        )

    def _start(self) -> dict[str, Any]:
        """The adapter to start from: the last complete round's, or the seeded initial one."""
        self.output.mkdir(parents=True, exist_ok=True)
        check_resumable(self.settings)
        settings_path = self.output / "settings.json"
        wanted = self.settings.to_run_config()
        write_atomic(settings_path, json.dumps(wanted, indent=2, ensure_ascii=False))
        done = completed_rounds(self.output)
        if not done:
            return initial_state(self.settings)
        self.offset = done[-1]
        self.history = [
            _read_round(self.output, r) for r in [0, *done] if _has_round(self.output, r)
        ]
        log.info("continuing after round %d of %d", self.offset, self.settings.rounds)
        from safetensors.torch import load_file

        saved = load_file(str(round_dir(self.output, self.offset) / "adapter_model.safetensors"))
        # under the names get_peft_model_state_dict gives, in the members' order (the file's is
        # sorted): FedAvgM pairs the global arrays with the members' average by position
        return {name: saved[name] for name in initial_state(self.settings)}

    def _after_round(self, server_round: int, arrays: Any) -> Any:
        """Flower's evaluate_fn: save the round, score the global model, record the round."""
        from flwr.app import MetricRecord

        number = self.offset + server_round
        if server_round == 0 and self.offset:
            return None  # a restart: round `offset` was measured before the stop
        entry: dict[str, Any] = {"round": number, **self.round_log.current}
        self.round_log.current = {}
        state = arrays.to_torch_state_dict()
        entry["adapter_bytes"] = sum(t.numel() * t.element_size() for t in state.values())
        if number > 0 and self.settings.secure:
            entry["secure_upload_bytes"] = self.grid.uploaded
        entry["seconds"] = round(time.monotonic() - self.round_started, 2)
        directory = round_dir(self.output, number)
        if number > 0:
            save_adapter(self.settings, state, directory)
            _save_server_state(self.strategy, directory)
        else:
            directory.mkdir(parents=True, exist_ok=True)
        privacy = spent(self.strategy) if number > 0 else None
        if privacy is not None:
            entry["privacy"] = privacy
        if self.settings.eval_task:
            target = str(directory) if number > 0 else self.settings.base
            entry["global"] = global_score(self.settings, target, self.output / "runs.sqlite")
        write_atomic(directory / ROUND_FILE, json.dumps(entry, indent=2, ensure_ascii=False))
        self.history.append(entry)
        write_atomic(self.output / "history.json", json.dumps(self.history, indent=2))
        self.round_started = time.monotonic()
        score = entry.get("global", {}).get("score")
        return MetricRecord({"round": number, **({"score": score} if score is not None else {})})

    def _finish(self) -> Path:
        done = completed_rounds(self.output)
        if not done:
            raise FederatedError("no round finished", hint="see the coordinator's log")
        self._refuse_if_no_round_aggregated()
        final = self.output / "final"
        partial = self.output / "final.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(round_dir(self.output, done[-1]), partial)
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
        return final


def check_resumable(settings: FederationSettings) -> None:
    """A run directory already holding a run with other settings is refused, in one line,
    before anything starts (only --rounds may change between a run and its continuation)."""
    settings_path = Path(settings.output) / "settings.json"
    if not settings_path.exists():
        return
    # a setting added after the run was saved has its default there
    saved = {**FederationSettings().to_run_config(), **json.loads(settings_path.read_text("utf-8"))}
    wanted = settings.to_run_config()
    differ = sorted(k for k in wanted if k not in RESUMABLE and saved.get(k) != wanted[k])
    if differ:
        raise FederatedError(
            f"{settings.output} holds a run with other settings ({', '.join(differ)})",
            hint="give a new --output, or the same settings to continue it",
        )


def global_score(settings: FederationSettings, target: str, store_path: Path) -> dict[str, Any]:
    """The harness score of `hf:target` on the coordinator's task, with its 95 % CI."""
    scores = harness_scores(settings, target, store_path)
    estimate = scores.estimate
    return {
        "task": scores.run.task,
        "score": estimate.mean,
        "low": estimate.low,
        "high": estimate.high,
        "n": estimate.n,
        "errors": scores.errors,
        "run_id": scores.run.run_id,
    }


def harness_scores(settings: FederationSettings, target: str, store_path: Path) -> Any:
    """Per-item scores (bench's RunScores) of `hf:target` on `settings.eval_task`."""
    return tasks_scores(settings, [settings.eval_task], target, store_path)[settings.eval_task]


def tasks_scores(
    settings: FederationSettings, tasks: Sequence[str], target: str, store_path: Path
) -> dict[str, Any]:
    """Per task, the per-item scores of `hf:target` (from the run store when already scored),
    with the model loaded once; it is freed afterwards (each checkpoint is measured once)."""
    import asyncio

    from openparity.bench.comparison import load_scores
    from openparity.bench.runner import run_task
    from openparity.bench.store import RunStore
    from openparity.bench.tasks import get_task
    from openparity.models import open_model
    from openparity.models.hf_backend import release_hf_model

    model = open_model(f"hf:{target}")
    scores = {}
    try:
        with RunStore(store_path) as store:
            for name in tasks:
                summary = asyncio.run(
                    run_task(
                        model, get_task(name), store, limit=settings.eval_items or None, resume=True
                    )
                )
                scores[name] = load_scores(store, summary.run.run_id)
        return scores
    finally:
        release_hf_model(target)


def round_dir(output: Path, number: int) -> Path:
    return output / "rounds" / f"{number:04d}"


def completed_rounds(output: Path) -> list[int]:
    """Rounds (1, 2, ...) whose adapter and round.json are both on disk, in order."""
    rounds = output / "rounds"
    if not rounds.is_dir():
        return []
    found = []
    for entry in rounds.iterdir():
        if entry.name.isdigit() and int(entry.name) > 0 and (entry / ROUND_FILE).is_file():
            found.append(int(entry.name))
    return sorted(found)


def read_history(output: Path) -> list[dict[str, Any]]:
    path = Path(output) / "history.json"
    if not path.is_file():
        raise FederatedError(f"{output} holds no history.json", hint="is it a federated run?")
    return json.loads(path.read_text(encoding="utf-8"))


def _has_round(output: Path, number: int) -> bool:
    return (round_dir(output, number) / ROUND_FILE).is_file()


def _save_server_state(strategy: Any, directory: Path) -> None:
    """The server optimiser's state after a round, beside its adapter (written before
    round.json, which completes the round): FedAvgM's momentum, FedAdam's first and second
    moments. Plain FedAvg and FedProx keep none."""
    inner = _inner(strategy)
    state = {}
    momentum = getattr(inner, "momentum_vector", None)
    if momentum is not None:  # a list in the order of the arrays FedAvgM aggregated
        names = list(inner.current_arrays.keys())
        state.update({f"momentum/{n}": v for n, v in zip(names, momentum, strict=True)})
    for moment in ("m_t", "v_t"):
        state.update({f"{moment}/{n}": v for n, v in (getattr(inner, moment, None) or {}).items()})
    if not state:
        return
    import numpy as np
    from safetensors.numpy import save_file

    partial = directory / (SERVER_STATE_FILE + ".partial")
    save_file({n: np.ascontiguousarray(v) for n, v in state.items()}, partial)
    partial.replace(directory / SERVER_STATE_FILE)


def _restore_server_state(strategy: Any, directory: Path, names: list[str]) -> None:
    """A restarted strategy continues with the state the last saved round left; FedAvgM's
    momentum is listed in the order of the arrays it starts from (`names`)."""
    from safetensors.numpy import load_file

    inner = _inner(strategy)
    if (directory / LEGACY_MOMENTUM_FILE).is_file():
        saved = load_file(str(directory / LEGACY_MOMENTUM_FILE))
        inner.momentum_vector = [saved[name] for name in names]
    if not (directory / SERVER_STATE_FILE).is_file():
        return
    saved = load_file(str(directory / SERVER_STATE_FILE))
    if "momentum/" + names[0] in saved:
        inner.momentum_vector = [saved["momentum/" + name] for name in names]
    for moment in ("m_t", "v_t"):
        kept = {k.split("/", 1)[1]: v for k, v in saved.items() if k.startswith(moment + "/")}
        if kept:
            setattr(inner, moment, kept)


def _inner(strategy: Any) -> Any:
    """The aggregating strategy (under DP, the one the DP wrapper wraps)."""
    return getattr(strategy, "strategy", strategy)


def _read_round(output: Path, number: int) -> dict[str, Any]:
    return json.loads((round_dir(output, number) / ROUND_FILE).read_text(encoding="utf-8"))


def _last_line(reason: str) -> str:
    """The line of a member's error that says what went wrong (Ray wraps it in tracebacks)."""
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    meaningful = [line for line in lines if "Message:" in line or "Error" in line]
    return (meaningful or lines or ["unknown error"])[-1][-300:]
