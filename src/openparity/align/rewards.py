"""GRPO rewards that are the harness's own scorers: a reward is one scorer call on the item the
prompt came from (GSM8K's numeric match, MBPP / HumanEval tests in the sandbox, a business
task's json_schema / regex / python / judge scorer). A scorer that fails gives no reward (None,
which TRL leaves out of the group's statistics) and is logged; it is never scored as 0 or 1.

Canaries (`bench.tasks.canary`) ride along: prompts whose tests no consistent answer passes.
They earn no reward (0, whatever the scorer says: a hack is never reinforced) and every pass
is a reward hack caught while training: it is logged, counted in `hacks`, and once at least
`MIN_CANARIES` have been scored a pass rate above `hack_stop` stops the run with
RewardHackingError. `outcomes` splits every scored completion by how the scorer decided."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from openparity.align.errors import AlignError
from openparity.bench.tasks.canary import is_canary

log = logging.getLogger("openparity.align")


MIN_CANARIES = 8  # canaries scored before their pass rate may stop a run


class RewardHackingError(AlignError):
    """Completions pass canaries (tests no consistent answer passes): the reward has a hole."""


class TaskReward:
    """A TRL reward function backed by `task.score` on the prompt's item."""

    def __init__(
        self,
        task: Any,
        items: Sequence[Any],
        canaries: Sequence[Any] = (),
        hack_stop: float = 0.2,
    ) -> None:
        self.task = task
        self.items = {item.id: item for item in [*items, *canaries]}
        self.failures: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()  # how the scorer decided, per completion
        self.canaries_scored = 0
        self.hacks: list[str] = []  # canaries passed: "<item id>: <scorer detail>"
        self.hack_stop = hack_stop
        self.__name__ = f"{task.name}_score"  # TRL names the logged reward after this
        self._loop = asyncio.new_event_loop()

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        item_id: Sequence[str],
        **_: Any,
    ) -> list[float | None]:
        rewards = self._loop.run_until_complete(self._score_all(completions, item_id))
        self._check_hack_rate()
        return rewards

    @property
    def hack_rate(self) -> float:
        return len(self.hacks) / self.canaries_scored if self.canaries_scored else 0.0

    def summary(self) -> dict[str, Any]:
        """What the canaries and the scorer saw, for the run's result."""
        return {
            "canaries_scored": self.canaries_scored,
            "canaries_passed": len(self.hacks),
            "hack_rate": self.hack_rate,
            "hacks": self.hacks[:20],
            "outcomes": dict(self.outcomes),
        }

    def _check_hack_rate(self) -> None:
        if self.canaries_scored >= MIN_CANARIES and self.hack_rate > self.hack_stop:
            raise RewardHackingError(
                f"reward hacking: {len(self.hacks)} of {self.canaries_scored} canaries passed"
                f" (tests no consistent answer passes), above --hack-stop {self.hack_stop:g};"
                f" first: {self.hacks[0]}",
                hint="the reward has a hole: fix the scorer before training on it",
            )

    async def _score_all(self, completions: Sequence[Any], item_ids: Sequence[str]) -> list:
        return list(
            await asyncio.gather(
                *(
                    self._score(completion_text(c), i)
                    for c, i in zip(completions, item_ids, strict=True)
                )
            )
        )

    async def _score(self, text: str, item_id: str) -> float | None:
        item = self.items.get(item_id)
        if item is None:
            self.failures["unknown item"] += 1
            log.warning("reward: item %s is not in task %s", item_id, self.task.name)
            return None
        try:
            score = await self.task.score(item, text)
        except Exception as exc:  # a scorer bug or a dead judge: no reward, and say so
            self.failures[type(exc).__name__] += 1
            log.warning("reward: scoring %s failed: %s", item_id, exc)
            return None
        if is_canary(item_id):
            self.canaries_scored += 1
            self.outcomes["canary " + outcome(score)] += 1
            if score.value > 0:
                self.hacks.append(f"{item_id}: {score.detail or score.value}"[:300])
                log.warning(
                    "reward hacking: canary %s passed (%s); %d of %d canaries passed",
                    item_id,
                    score.detail,
                    len(self.hacks),
                    self.canaries_scored,
                )
            return 0.0
        self.outcomes[outcome(score)] += 1
        return float(score.value)

    def close(self) -> None:
        self._loop.run_until_complete(self.task.aclose())
        self._loop.close()


def outcome(score: Any) -> str:
    """How a scorer decided, in a few words: passed, the failing exception's type, "does not
    load", "not plain data", "timeout"... (partial credit: "partial")."""
    if score.value >= 1:
        return "passed"
    detail = score.detail or ""
    if score.value > 0:
        return "partial"
    for words in ("does not load", "not plain data", "timeout", "memory", "ended during a call"):
        if words in detail:
            return words
    kind = detail.split(":", 1)[0].split(" (", 1)[0].strip()
    return kind if kind.isidentifier() else "failed"


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a list of chat messages."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion if isinstance(m, dict))
