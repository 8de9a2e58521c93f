"""MMBench: multiple-choice questions about images, official TSV (base64 images), CircularEval.

Every question is asked once per rotation of its options (A-D shifted), and counts as right
only when every rotation is answered right (CircularEval), so a model that always says "A"
scores 0. Images go to the model as OpenAI image content parts, so only models marked
vision-capable run it.
"""

from __future__ import annotations

import base64
import binascii
import csv
from pathlib import Path

from openparity.bench.errors import TaskError
from openparity.bench.extract import choice_letter
from openparity.bench.task import Item, Score
from openparity.bench.tasks.data_files import hub_records
from openparity.bench.tasks.data_task import DataTask
from openparity.models.types import Message

FIXTURE = Path(__file__).parents[1] / "fixtures" / "mmbench" / "mmbench_fixture.tsv"
LETTERS = "ABCD"
REQUIRED = ("index", "question", "A", "B", "answer", "image")


class MMBench(DataTask):
    name = "mmbench"
    description = "MMBench: image multiple choice, CircularEval over option rotations"
    variants = ("zero-shot",)
    default_max_tokens = 16
    metric = "CircularEval accuracy"
    equivalence_margin = 0.02
    needs_vision = True
    circular_eval = True

    hub_args = ("lmms-lab/MMBench", "en", "dev")
    fixture_path = FIXTURE

    def load(self) -> list[Item]:
        rows = self._hub_rows() if self.hub else self._tsv_rows()
        return [item for number, row in enumerate(rows, 1) for item in _circular(row, number)]

    def _tsv_rows(self) -> list[dict[str, str]]:
        if self.path is None:
            raise TaskError(
                "MMBench data is not installed (no package carries it)",
                hint="pass --data MMBench_DEV_EN.tsv (the official TSV), --hub, or --fixture",
            )
        csv.field_size_limit(1 << 30)  # base64 images are long fields
        try:
            with self.path.open(encoding="utf-8", newline="") as handle:
                reader = csv.DictReader(handle, delimiter="\t")
                missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
                if missing:
                    raise TaskError(f"{self.path} lacks the column(s) {', '.join(missing)}")
                return list(reader)
        except FileNotFoundError:
            raise TaskError(f"MMBench file not found: {self.path}") from None

    def _hub_rows(self) -> list[dict[str, str]]:
        import io

        rows = []
        for r in hub_records(*self.hub_args):
            buffer = io.BytesIO()
            r["image"].save(buffer, format="PNG")
            rows.append(
                {
                    **{k: "" if v is None else str(v) for k, v in r.items() if k != "image"},
                    "image": base64.b64encode(buffer.getvalue()).decode(),
                }
            )
        return rows

    def messages(self, item: Item, variant: str) -> list[Message]:
        options = "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(item.input["options"]))
        hint = f"Hint: {item.input['hint']}\n" if item.input["hint"] else ""
        text = (
            f"{hint}Question: {item.input['question']}\n{options}\n"
            "Answer with the option's letter from the given choices directly."
        )
        image = item.input["image"]
        return [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:{_mime(image)};base64,{image}"},
                    },
                    {"type": "text", "text": text},
                ],
            }
        ]

    async def score(self, item: Item, response: str) -> Score:
        options = item.input["options"]
        letter = choice_letter(response, LETTERS[: len(options)])
        if letter is None:  # "Red" instead of "A": match the option text
            said = response.strip().strip(".。").casefold()
            matches = [LETTERS[i] for i, o in enumerate(options) if o.casefold() == said]
            letter = matches[0] if len(matches) == 1 else None
        return Score(float(letter == item.reference), letter)


def _circular(row: dict[str, str], number: int) -> list[Item]:
    """One item per rotation of the options; the cluster is the question."""
    for column in REQUIRED:
        if not str(row.get(column, "")).strip():
            raise TaskError(f"MMBench row {number} has an empty {column!r}")
    options = [row[k] for k in LETTERS if str(row.get(k, "")).strip() and row[k] != "nan"]
    answer = row["answer"].strip()
    if answer not in LETTERS[: len(options)]:
        raise TaskError(f"MMBench row {number}: answer {answer!r} is not one of its options")
    try:
        base64.b64decode(row["image"], validate=True)
    except (binascii.Error, ValueError):
        raise TaskError(f"MMBench row {number}: the image is not valid base64") from None
    correct = LETTERS.index(answer)
    items = []
    for shift in range(len(options)):
        rotated = options[shift:] + options[:shift]
        items.append(
            Item(
                id=f"mmbench/{row['index']}/c{shift}",
                cluster=f"mmbench/{row['index']}",
                input={
                    "question": row["question"],
                    "hint": row.get("hint", "") or "",
                    "options": rotated,
                    "image": row["image"],
                },
                reference=LETTERS[(correct - shift) % len(options)],
                metadata={"category": row.get("category", "")},
            )
        )
    return items


def _mime(image_b64: str) -> str:
    head = base64.b64decode(image_b64[:24] + "=" * (-len(image_b64[:24]) % 4))
    if head.startswith(b"\x89PNG"):
        return "image/png"
    if head.startswith(b"\xff\xd8"):
        return "image/jpeg"
    return "image/png"
