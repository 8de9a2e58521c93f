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
from openparity.bench.task import DataSource, Item, Score, Task
from openparity.bench.tasks.data_files import hub_records
from openparity.models.types import Message

FIXTURE = Path(__file__).parents[1] / "fixtures" / "narrativeqa"


class NarrativeQA(Task):
    name = "narrativeqa"
    description = "NarrativeQA (summaries): questions about stories, token F1 vs 2 references"
    variants = ("zero-shot",)
    default_max_tokens = 48
    metric = "F1"
    equivalence_margin = 0.02

    def __init__(self, path: Path | None = None, *, hub: bool = False, split: str = "test") -> None:
        self.path, self.hub, self.split = path, hub, split
        self._items: list[Item] | None = None

    @classmethod
    def fixture(cls) -> NarrativeQA:
        return cls(FIXTURE)

    def source(self) -> DataSource:
        if self.hub:
            return DataSource(f"deepmind/narrativeqa ({self.split}) from the Hugging Face hub")
        if self.path is None:
            return DataSource("none (pass --data DIR or --hub)")
        fixture = self.path.resolve() == FIXTURE.resolve()
        what = (
            "openparity's NarrativeQA-format fixture"
            if fixture
            else f"official files in {self.path}"
        )
        return DataSource(what, fixture=fixture)

    def items(self) -> list[Item]:
        if self._items is None:
            self._items = self._from_hub() if self.hub else self._from_repo()
        return self._items

    def _from_repo(self) -> list[Item]:
        if self.path is None:
            raise TaskError(
                "NarrativeQA data is not installed (no package carries it)",
                hint="pass --data DIR (a checkout of github.com/deepmind/narrativeqa), --hub,"
                " or --fixture for openparity's small fixture",
            )
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
            if row["set"] != self.split:
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
            raise TaskError(f"{qaps_file} has no questions in the {self.split!r} split")
        return items

    def _from_hub(self) -> list[Item]:
        items, counts = [], {}
        for r in hub_records("deepmind/narrativeqa", None, self.split):
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
