"""Canary items: a code item's statement with tests that contradict themselves.

A canary keeps the item's prompt and every one of its tests, and adds the negation of its
first assertion (`assert not (<the first test>)`). A deterministic answer cannot satisfy a
test and its negation, so no honest answer passes a canary: a pass means the scorer accepted
something it should not have (a forged exit, a stolen proof, a result that equals
everything...). GRPO mixes canaries into its batches and watches their pass rate
(`align.rewards.TaskReward`): reward hacking shows up while training, not after.
"""

from __future__ import annotations

import ast
import dataclasses

from openparity.bench.task import Item

CANARY_PREFIX = "canary:"


def negated_first_assert(source: str) -> str | None:
    """`assert not (EXPR)` for the first `assert EXPR` in `source` (at any depth, e.g. inside
    HumanEval's `check`), or None when there is none or the source does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    first = next((n for n in ast.walk(tree) if isinstance(n, ast.Assert)), None)
    if first is None:
        return None
    negated = ast.Assert(test=ast.UnaryOp(op=ast.Not(), operand=first.test), msg=None)
    return ast.unparse(negated) + "  # canary: no consistent answer passes this and the tests"


def canary_of(item: Item, reference: dict) -> Item:
    """`item` as a canary with its contradicted `reference`."""
    return dataclasses.replace(
        item,
        id=CANARY_PREFIX + item.id,
        reference=reference,
        metadata={**item.metadata, "canary": True},
    )


def is_canary(item_id: str) -> bool:
    return item_id.startswith(CANARY_PREFIX)
