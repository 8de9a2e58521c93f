"""GRPO rewards are the harness's scorers: GSM8K's number match, MBPP's asserts in the sandbox.
A reward-hacking completion earns nothing; a scorer that fails gives no reward, not a number."""

from __future__ import annotations

from dataclasses import dataclass

from openparity.align.rewards import TaskReward
from openparity.bench.tasks import get_task


def completion(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def test_gsm8k_reward_is_the_gsm8k_scorer():
    task = get_task("gsm8k")
    item = task.items()[0]
    reward = TaskReward(task, [item])
    right = f"Some steps.\nThe answer is {item.reference}."
    wrong = f"The answer is {int(item.reference) + 1}."
    try:
        assert reward([None] * 3, [completion(right), completion(wrong), right],
                      item_id=[item.id] * 3) == [1.0, 0.0, 1.0]  # fmt: skip
    finally:
        reward.close()


def test_mbpp_reward_runs_the_tests_in_the_sandbox_and_is_not_fooled():
    task = get_task("mbpp")
    item = task.items()[0]
    solution = f"```python\n{item.reference['solution']}\n```"
    exits_early = "```python\nimport sys\nsys.exit(0)\n```"
    forged = "```python\nprint('OK: all tests passed')\n```"
    reward = TaskReward(task, [item])
    try:
        scores = reward([None] * 3, [completion(c) for c in (solution, exits_early, forged)],
                        item_id=[item.id] * 3)  # fmt: skip
    finally:
        reward.close()
    assert scores == [1.0, 0.0, 0.0]


@dataclass
class BrokenTask:
    """A task whose scorer raises (a bug, a dead judge)."""

    name: str = "broken"

    async def score(self, item, text):
        raise RuntimeError("judge unreachable")

    async def aclose(self):
        pass


def test_a_failing_scorer_gives_no_reward_and_is_counted():
    item = get_task("gsm8k").items()[0]
    reward = TaskReward(BrokenTask(), [item])
    try:
        scores = reward([None, None], [completion("1"), completion("2")],
                        item_id=[item.id, "gsm8k/unknown"])  # fmt: skip
    finally:
        reward.close()
    assert scores == [None, None]
    assert reward.failures == {"RuntimeError": 1, "unknown item": 1}
