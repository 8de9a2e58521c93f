"""Build the format experiment of `openparity align`: SFT data from some GSM8K items, a held-out
format-compliance task on others.

    python examples/align/gsm8k_format.py OUT --train 600:664 --heldout 0:40

writes OUT/train.jsonl (question -> the reference solution, which ends in "#### N"; each record
tagged with a `topic`, money / time / measures / counting, for non-IID federated splits) and
OUT/gsm8k-format.yaml + OUT/heldout.jsonl, a user task that scores whether an answer ends in
"#### N", and OUT/gsm8k-reference.yaml, the per-token probability the model gives the held-out
items' reference solutions (what training taught beyond the format). GSM8K's train split is not
shipped on PyPI, so both sides come from the test split, from disjoint item ranges;
`align --decontaminate OUT/gsm8k-format.yaml` proves they share no text. With the hub, use
openai/gsm8k's train split for the training side instead.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from openparity.bench.tasks.gsm8k import GSM8K

TASK = """\
name: gsm8k-format
description: GSM8K questions; does the answer end in "#### N" (format compliance, not accuracy)
data: heldout.jsonl
id_field: id
reference_field: answer
prompt: "{question}"
scorer:
  type: regex
  pattern: '####\\s*\\$?-?[0-9][0-9,]*(\\.[0-9]+)?\\s*$'
max_tokens: 200
"""

REFERENCE_TASK = """\
name: gsm8k-reference
description: GSM8K questions; how likely the model finds the reference solution (per token)
data: heldout.jsonl
id_field: id
reference_field: answer
prompt: "{question}"
scorer: {type: reference_likelihood}
margin: 1
"""


TOPICS = (  # first match wins
    ("money", r"\$|dollar|cent|price|cost|pay|earn|sell|buy"),
    ("time", r"\b(hours?|minutes?|days?|weeks?|months?|years?)\b"),
    ("measures", r"\b(miles?|feet|foot|meters?|inch(es)?|km|pounds?|kg|gallons?|liters?)\b"),
)


def topic(question: str) -> str:
    """A coarse topic from the question's words (for splitting members by topic)."""
    for name, pattern in TOPICS:
        if re.search(pattern, question, flags=re.IGNORECASE):
            return name
    return "counting"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", default="600:664", help="START:END of GSM8K test items")
    parser.add_argument("--heldout", default="0:40", help="START:END of GSM8K test items")
    args = parser.parse_args()
    _, records = GSM8K(None).records()
    first, last = map(int, args.train.split(":"))
    start, end = map(int, args.heldout.split(":"))
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "train.jsonl", "w", encoding="utf-8") as handle:
        for index in range(first, last):
            record = records[index]
            messages = [
                {"role": "user", "content": record["question"]},
                {"role": "assistant", "content": record["answer"]},
            ]
            # ids: --curriculum matches them; topic: federated --split topic
            row = {"id": f"gsm8k/{index}", "topic": topic(record["question"]), "messages": messages}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(args.out / "heldout.jsonl", "w", encoding="utf-8") as handle:
        for index in range(start, end):
            row = {"id": f"gsm8k/{index}", **records[index]}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    (args.out / "gsm8k-format.yaml").write_text(TASK, encoding="utf-8")
    (args.out / "gsm8k-reference.yaml").write_text(REFERENCE_TASK, encoding="utf-8")
    print(f"{last - first} training records, {end - start} held-out items in {args.out}")


if __name__ == "__main__":
    main()
