"""Training data helpers; the tiny model (`tiny_base`) is in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("trl")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    import json

    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def chat_rows(n: int) -> list[dict]:
    """Short chat records, some in Chinese (the pipeline must carry any script)."""
    rows = []
    for i in range(n):
        question = f"What is {i} plus {i}?" if i % 2 else f"{i} 加 {i} 等于多少？"
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": f"{i} + {i} = {2 * i}. #### {2 * i}"},
                ]
            }
        )
    return rows
