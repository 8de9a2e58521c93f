"""NarrativeQA (summary setting): many questions per story, free-text answers scored by token
F1 against both reference answers (ROUGE-L kept in each record's detail). The story is the
cluster, so CIs account for questions that share a context.

No copy of NarrativeQA is reachable offline: point --data at a checkout of the official
repository (qaps.csv + third_party/wikipedia/summaries.csv), use --hub, or run the small fixture
openparity ships (reported as a fixture run).
"""

from __future__ import annotations

import csv
from pathlib import Path

from openparity.bench.errors import TaskError
from openparity.bench.qa_metrics import best, rouge_l, token_f1
from openparity.bench.task import Item, Score
from openparity.bench.tasks.data_files import hub_records
from openparity.bench.tasks.data_task import DataTask
from openparity.models.types import Message

FIXTURE = Path(__file__).parents[1] / "fixtures" / "narrativeqa"


class NarrativeQA(DataTask):
    name = "narrativeqa"
    description = "NarrativeQA (summaries): questions about stories, token F1 vs 2 references"
    variants = ("zero-shot",)
    default_max_tokens = 48
    metric = "F1"
    equivalence_margin = 0.02

    hub_args = ("deepmind/narrativeqa", None, "test")
    fixture_path = FIXTURE

    def load(self) -> list[Item]:
        return self._from_hub() if self.hub else self._from_repo()

    def _from_repo(self) -> list[Item]:
        if self.path is None:
            raise TaskError(
                "NarrativeQA data is not installed (no package carries it)",
                hint="pass --data DIR (a checkout of github.com/deepmind/narrativeqa), --hub,"
                " or --fixture for openparity's small fixture",
            )
        split = self.hub_args[2]
        summaries_file = next(
            (
                p
                for p in (
                    self.path / "third_party/wikipedia/summaries.csv",
                    self.path / "summaries.csv",
                )
                if p.is_file()
            ),
            None,
        )
        qaps_file = self.path / "qaps.csv"
        if summaries_file is None or not qaps_file.is_file():
            raise TaskError(f"{self.path} lacks qaps.csv or third_party/wikipedia/summaries.csv")
        summaries = {
            r["document_id"]: r["summary"] for r in _csv(summaries_file, ("document_id", "summary"))
        }
        items = []
        counts: dict[str, int] = {}
        for row in _csv(qaps_file, ("document_id", "set", "question", "answer1", "answer2")):
            if row["set"] != split:
                continue
            doc = row["document_id"]
            if doc not in summaries:
                raise TaskError(f"{qaps_file}: story {doc} has no summary in {summaries_file}")
            index = counts[doc] = counts.get(doc, -1) + 1
            items.append(
                Item(
                    id=f"narrativeqa/{doc}/{index}",
                    cluster=doc,
                    input={"summary": summaries[doc], "question": row["question"]},
                    reference=[row["answer1"], row["answer2"]],
                )
            )
        if not items:
            raise TaskError(f"{qaps_file} has no questions in the {split!r} split")
        return items

    def _from_hub(self) -> list[Item]:
        items, counts = [], {}
        for r in hub_records(*self.hub_args):
            doc = r["document"]["id"]
            index = counts[doc] = counts.get(doc, -1) + 1
            items.append(
                Item(
                    id=f"narrativeqa/{doc}/{index}",
                    cluster=doc,
                    input={
                        "summary": r["document"]["summary"]["text"],
                        "question": r["question"]["text"],
                    },
                    reference=[a["text"] for a in r["answers"]],
                )
            )
        return items

    def messages(self, item: Item, variant: str) -> list[Message]:
        return [
            {
                "role": "user",
                "content": (
                    "Read the story summary and answer the question in a few words.\n\n"
                    f"Summary: {item.input['summary']}\n\n"
                    f"Question: {item.input['question']}\nAnswer:"
                ),
            }
        ]

    async def score(self, item: Item, response: str) -> Score:
        answer = response.strip().splitlines()[0] if response.strip() else ""
        f1 = best(token_f1, answer, item.reference)
        return Score(f1, answer[:300], detail=f"rougeL={best(rouge_l, answer, item.reference):.3f}")


def _csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise TaskError(f"{path} lacks the column(s) {', '.join(missing)}")
        return list(reader)
