"""GRPO rewards that are the harness's own scorers: a reward is one scorer call on the item the
prompt came from (GSM8K's numeric match, MBPP / HumanEval tests in the sandbox, a business
task's json_schema / regex / python / judge scorer). A scorer that fails gives no reward (None,
which TRL leaves out of the group's statistics) and is logged; it is never scored as 0 or 1."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("openparity.align")


class TaskReward:
    """A TRL reward function backed by `task.score` on the prompt's item."""

    def __init__(self, task: Any, items: Sequence[Any]) -> None:
        self.task = task
        self.items = {item.id: item for item in items}
        self.failures: Counter[str] = Counter()
        self.__name__ = f"{task.name}_score"  # TRL names the logged reward after this
        self._loop = asyncio.new_event_loop()

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], item_id: Sequence[str],
        **_: Any,
    ) -> list[float | None]:  # fmt: skip
        return self._loop.run_until_complete(self._score_all(completions, item_id))

    async def _score_all(self, completions: Sequence[Any], item_ids: Sequence[str]) -> list:
        return list(
            await asyncio.gather(
                *(self._score(completion_text(c), i) for c, i in zip(completions, item_ids,
                                                                      strict=True))
            )
        )  # fmt: skip

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
        return float(score.value)

    def close(self) -> None:
        self._loop.run_until_complete(self.task.aclose())
        self._loop.close()


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a list of chat messages."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion if isinstance(m, dict))
