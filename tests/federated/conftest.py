"""An alliance's data: chat records on three topics (Chinese among them), split into members."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("trl")

TOPICS = ("addition", "中文", "doubling")


def alliance_records(n: int = 60) -> list[dict]:
    rows = []
    for i in range(n):
        topic = TOPICS[i % 3]
        question = {
            "addition": f"What is {i} plus {i}?",
            "中文": f"{i} 加 {i} 等于多少？",
            "doubling": f"Double {i}.",
        }[topic]
        rows.append(
            {
                "id": f"rec-{i}",
                "topic": topic,
                "messages": [
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": f"{i} + {i} = {2 * i}. #### {2 * i}"},
                ],
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


HELDOUT_TASK = """\
name: doubling-format
data: heldout.jsonl
id_field: id
reference_field: answer
prompt: "{question}"
scorer:
  type: regex
  pattern: '####\\s*[0-9]+\\s*$'
max_tokens: 6
"""


def write_heldout_task(directory: Path, items: int) -> Path:
    """A held-out format task (does the answer end in "#### N"?) of `items` doubling questions,
    unseen in training; returns its YAML file."""
    heldout = [
        {"id": f"h{i}", "question": f"Double {100 + i}.", "answer": str(200 + 2 * i)}
        for i in range(items)
    ]
    write_jsonl(directory / "heldout.jsonl", heldout)
    path = directory / "task.yaml"
    path.write_text(HELDOUT_TASK, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def alliance_data(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("alliance") / "all.jsonl", alliance_records())


@pytest.fixture(scope="module")
def coordinator_identity():
    """Flower's task identity as a ServerApp process has it (messages can then be made)."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id = TaskIdentity._node_id = TaskIdentity._task_id = None
