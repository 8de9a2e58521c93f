"""An LLM judge: a third model grades an answer from 0 to 10 against a rubric and a reference.
Used by business-task scorers and by the gateway's judge check."""

from __future__ import annotations

import re
from dataclasses import dataclass

from openparity.bench.errors import TaskError
from openparity.models.base import ChatModel
from openparity.models.types import ChatRequest, Completion

JUDGE_PROMPT = """You grade an answer. Reply with a line "Score: N" where N is an integer from 0
(wrong or useless) to 10 (fully correct and useful), after at most two sentences of reasons.

Rubric: {rubric}

Question and context:
{question}

Reference answer (may be empty):
{reference}

Answer to grade:
{answer}"""

_SCORE = re.compile(r"score\s*[:：]?\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


@dataclass(frozen=True)
class Grade:
    """The judge's score in [0, 10], its words, and the call (for its cost)."""

    score: float
    verdict: str
    completion: Completion


async def grade(
    judge: ChatModel, *, rubric: str, question: str, reference: str, answer: str
) -> Grade:
    """Ask `judge` to grade `answer`; raises TaskError when it gives no score."""
    prompt = JUDGE_PROMPT.format(
        rubric=rubric, question=question[:4000], reference=reference[:2000], answer=answer[:4000]
    )
    verdict = await judge.generate(ChatRequest.from_prompt(prompt, max_tokens=120))
    found = _SCORE.findall(verdict.text)
    if not found:
        raise TaskError(f"the judge {judge.name} gave no score: {verdict.text[:120]!r}")
    return Grade(min(10.0, max(0.0, float(found[-1]))), verdict.text, verdict)
