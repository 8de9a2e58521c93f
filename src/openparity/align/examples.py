"""Training examples for the three methods, read from JSONL and checked line by line.

- SFT: `openparity data` outputs: `messages` (the last one is the assistant's answer), or
  `prompt` + `response`. They become TRL prompt-completion rows, so the loss is on the answer.
- DPO: `prompt` + `chosen` + `rejected` (what `data generate --method pairs` writes).
- GRPO: the prompts of a benchmark or business task (`--task`), each with its item id, so the
  reward is the task's own scorer on that item.

Every record is screened against the benchmark items the alliance evaluates on
(`data.decontam`): a record sharing a 13-word run or a sampled 50-character substring with an
evaluation item is dropped and counted, never trained on.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openparity.align.errors import AlignError
from openparity.data.decontam import BenchmarkIndex
from openparity.data.records import record_text


@dataclass
class Examples:
    """Rows ready for a TRL trainer, and what was left out and why."""

    rows: list[dict[str, Any]]
    source: str
    dropped: Counter = field(default_factory=Counter)
    items_hit: Counter = field(default_factory=Counter)
    ids: list[str] = field(default_factory=list)  # one per row: the record's or item's id

    def summary(self) -> str:
        left_out = ", ".join(f"{n} {why}" for why, n in sorted(self.dropped.items()))
        return f"{len(self.rows)} examples from {self.source}" + (
            f" ({left_out} left out)" if left_out else ""
        )


def read_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a bad line is one clear error."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise AlignError(f"cannot read {path} ({exc.strerror})", hint="check --data") from None
    except UnicodeDecodeError:
        raise AlignError(f"{path} is not UTF-8 text", hint="give a JSONL file") from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AlignError(
                f"{path}:{number}: not JSON ({exc.msg})",
                hint="one JSON object per line; `openparity data clean` quarantines bad lines",
            ) from None
        if not isinstance(record, dict):
            raise AlignError(f"{path}:{number}: not a JSON object")
        records.append((number, record))
    if not records:
        raise AlignError(f"{path} has no records", hint="give a JSONL file with one per line")
    return records


def sft_examples(path: Path, screen: BenchmarkIndex | None) -> Examples:
    """Prompt-completion chat rows from `messages` or `prompt` + `response` records."""
    examples = Examples([], str(path))
    for number, record in read_records(path):
        messages = _messages(record)
        if messages is None:
            raise AlignError(
                f"{path}:{number}: an SFT record needs messages ending with an assistant turn,"
                " or prompt + response",
                hint="see `openparity data generate` for the format",
            )
        if _contaminated(examples, screen, record_text(record) or ""):
            continue
        examples.rows.append({"prompt": messages[:-1], "completion": messages[-1:]})
        examples.ids.append(_record_id(path, number, record))
    return _nonempty(examples)


def dpo_examples(path: Path, screen: BenchmarkIndex | None) -> Examples:
    """Conversational preference rows from prompt / chosen / rejected records."""
    examples = Examples([], str(path))
    for number, record in read_records(path):
        fields = [record.get(k) for k in ("prompt", "chosen", "rejected")]
        if not all(isinstance(f, str) and f.strip() for f in fields):
            raise AlignError(
                f"{path}:{number}: a DPO record needs non-empty strings prompt, chosen, rejected",
                hint="`openparity data generate --method pairs` writes them",
            )
        prompt, chosen, rejected = fields
        if chosen.strip() == rejected.strip():
            examples.dropped["chosen = rejected"] += 1
            continue
        if _contaminated(examples, screen, "\n".join(fields)):
            continue
        examples.rows.append(
            {
                "prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }
        )
        examples.ids.append(_record_id(path, number, record))
    return _nonempty(examples)


def task_prompts(task: Any, items: list[Any], variant: str) -> Examples:
    """GRPO rows: a task's prompt for each item and the item id the reward looks up."""
    rows = [
        {"prompt": [dict(m) for m in task.messages(item, variant)], "item_id": item.id}
        for item in items
    ]
    return _nonempty(Examples(rows, f"task {task.name}", ids=[item.id for item in items]))


def canary_items(task: Any, items: list[Any], share: float, seed: int) -> list[Any]:
    """Canaries for `share` of the items (at least one when share > 0), chosen with `seed`:
    the task's items with tests no consistent answer passes. Tasks without them (answers
    that are not code) get none."""
    if share <= 0 or not hasattr(task, "canary") or not items:
        return []
    count = max(1, round(share * len(items)))
    chosen = random.Random(seed).sample(items, min(count, len(items)))
    return [c for c in (task.canary(item) for item in chosen) if c is not None]


def with_canaries(examples: Examples, canaries: Examples) -> Examples:
    """The rows with the canary rows spread evenly among them (an ordered curriculum keeps
    its order; canaries are seen throughout the run, not bunched at one end)."""
    rows, ids = list(examples.rows), list(examples.ids)
    step = (len(rows) + 1) / (len(canaries.rows) + 1)
    for k, (row, item_id) in enumerate(zip(canaries.rows, canaries.ids, strict=True)):
        at = round(step * (k + 1)) + k
        rows.insert(at, row)
        ids.insert(at, item_id)
    return Examples(
        rows,
        f"{examples.source} + {len(canaries.rows)} canaries",
        examples.dropped,
        examples.items_hit,
        ids,
    )


def _record_id(path: Path, number: int, record: dict[str, Any]) -> str:
    """The record's own id (data outputs carry one), else FILE:LINE."""
    return str(record.get("id") or f"{Path(path).name}:{number}")


def _messages(record: dict[str, Any]) -> list[dict[str, str]] | None:
    messages = record.get("messages")
    if isinstance(messages, list) and len(messages) >= 2:
        if not all(
            isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role")
            for m in messages
        ):
            return None
        if messages[-1]["role"] != "assistant":
            return None
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    prompt, response = record.get("prompt"), record.get("response")
    if isinstance(prompt, str) and isinstance(response, str) and prompt and response:
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    return None


def _contaminated(examples: Examples, screen: BenchmarkIndex | None, text: str) -> bool:
    if screen is None:
        return False
    found = screen.hit(text)
    if found is None:
        return False
    examples.dropped["contaminated"] += 1
    examples.items_hit[found[1]] += 1
    return True


def _nonempty(examples: Examples) -> Examples:
    if not examples.rows:
        raise AlignError(
            f"no usable examples in {examples.source} ({dict(examples.dropped)} left out)",
            hint="every record was dropped: check the data and --decontaminate",
        )
    return examples
