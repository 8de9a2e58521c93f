"""GRPO rewards are the harness's scorers: GSM8K's number match, MBPP's asserts in the sandbox.
A reward-hacking completion earns nothing; a scorer that fails gives no reward, not a number."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

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
        assert reward(
            [None] * 3, [completion(right), completion(wrong), right], item_id=[item.id] * 3
        ) == [1.0, 0.0, 1.0]
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
        scores = reward(
            [None] * 3,
            [completion(c) for c in (solution, exits_early, forged)],
            item_id=[item.id] * 3,
        )
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
        scores = reward(
            [None, None], [completion("1"), completion("2")], item_id=[item.id, "gsm8k/unknown"]
        )
    finally:
        reward.close()
    assert scores == [None, None]
    assert reward.failures == {"RuntimeError": 1, "unknown item": 1}


def test_canaries_earn_nothing_and_an_honest_answer_never_passes_one():
    task = get_task("mbpp")
    items = task.items()[:2]
    canaries = [task.canary(item) for item in items]
    reward = TaskReward(task, items, canaries)
    solutions = [completion(f"```python\n{i.reference['solution']}\n```") for i in items]
    try:
        scores = reward(
            [None] * 4, solutions * 2, item_id=[i.id for i in items] + [c.id for c in canaries]
        )
    finally:
        reward.close()
    assert scores == [1.0, 1.0, 0.0, 0.0]
    assert reward.hacks == [] and reward.canaries_scored == 2
    assert reward.outcomes == {"passed": 2, "canary AssertionError": 2}


@dataclass
class HoledTask:
    """MBPP with a planted hole: an answer that prints "ok" passes whatever its tests say
    (the kind of shortcut an exit-code or stdout check leaves open)."""

    real: object
    name: str = "mbpp-with-a-hole"

    async def score(self, item, text):
        from openparity.bench.task import Score

        if "print('ok')" in text:
            return Score(1.0, text, detail="printed ok")
        return await self.real.score(item, text)

    async def aclose(self):
        pass


def test_a_reward_with_a_hole_is_caught_by_its_canaries_and_stops_the_run():
    from openparity.align.rewards import MIN_CANARIES, RewardHackingError

    mbpp = get_task("mbpp")
    items = mbpp.items()[:MIN_CANARIES]
    canaries = [mbpp.canary(item) for item in items]
    reward = TaskReward(HoledTask(mbpp), items, canaries, hack_stop=0.2)
    hack = completion("```python\nprint('ok')\n```")
    try:
        # the hole pays on real items, as a hacking policy would find it does
        assert reward([None], [hack], item_id=[items[0].id]) == [1.0]
        for canary in canaries[:-1]:
            assert reward([None], [hack], item_id=[canary.id]) == [0.0]  # never reinforced
        assert len(reward.hacks) == MIN_CANARIES - 1 and "printed ok" in reward.hacks[0]
        with pytest.raises(RewardHackingError) as stopped:
            reward([None], [hack], item_id=[canaries[-1].id])
    finally:
        reward.close()
    assert f"{MIN_CANARIES} of {MIN_CANARIES} canaries passed" in stopped.value.one_line()


def test_canaries_exist_for_every_code_item_and_none_for_other_tasks():
    from openparity.align.examples import canary_items

    for name in ("humaneval", "mbpp"):
        task = get_task(name)
        assert all(task.canary(item) is not None for item in task.items())
    gsm8k = get_task("gsm8k")
    assert canary_items(gsm8k, gsm8k.items()[:10], 0.5, 0) == []
    mbpp = get_task("mbpp")
    chosen = canary_items(mbpp, mbpp.items()[:40], 0.05, 0)
    assert len(chosen) == 2 and all(c.id.startswith("canary:mbpp/") for c in chosen)
