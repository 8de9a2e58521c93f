"""Publishing a cleaned dataset: `data/train.jsonl` and `data/train.parquet` in the layout
Hugging Face `datasets` expects (chat `messages` for SFT, or prompt / chosen / rejected for
DPO), and a dataset card (README.md) with the counts, filters, contamination hits, diversity
and audit figures of the cleaning report. `datasets.load_dataset(DIR)` loads it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openparity.atomic import write_atomic
from openparity.bench.tasks.data_files import read_jsonl
from openparity.errors import OpenparityError

FORMATS = ("sft", "dpo")


class PublishError(OpenparityError):
    """The dataset cannot be published as asked."""


def publish(kept: Path, out: Path, *, fmt: str = "sft", name: str = "openparity-synthetic") -> int:
    """Write the dataset from `kept` (a kept.jsonl); returns the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fmt not in FORMATS:
        raise PublishError(f"unknown format {fmt!r}", hint="sft or dpo")
    rows = [_row(record, fmt, kept, n) for n, record in enumerate(read_jsonl(kept), start=1)]
    if not rows:
        raise PublishError(f"{kept} holds no records to publish")
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    write_atomic(
        data / "train.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    )
    temporary = data / "train.parquet.tmp"
    pq.write_table(pa.Table.from_pylist(rows), temporary)
    temporary.replace(data / "train.parquet")
    report_path = kept.parent / "report.json"
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.exists() else {}
    write_atomic(out / "README.md", dataset_card(name, fmt, len(rows), report))
    return len(rows)


def _row(record: dict[str, Any], fmt: str, source: Path, line: int) -> dict[str, Any]:
    if fmt == "dpo":
        if not all(isinstance(record.get(k), str) for k in ("prompt", "chosen", "rejected")):
            raise PublishError(f"{source}:{line}: a DPO row needs prompt, chosen and rejected")
        return {
            "id": record["id"],
            "prompt": record["prompt"],
            "chosen": record["chosen"],
            "rejected": record["rejected"],
        }
    messages = record.get("messages")
    if not isinstance(messages, list):
        if isinstance(record.get("prompt"), str) and isinstance(record.get("response"), str):
            messages = [
                {"role": "user", "content": record["prompt"]},
                {"role": "assistant", "content": record["response"]},
            ]
        else:
            raise PublishError(f"{source}:{line}: an SFT row needs messages or prompt + response")
    clean = [{"role": str(m.get("role")), "content": str(m.get("content"))} for m in messages]
    return {
        "id": str(record.get("id")),
        "messages": clean,
        "source": json.dumps(record.get("provenance") or {}, ensure_ascii=False),
    }


def dataset_card(name: str, fmt: str, rows: int, report: dict[str, Any]) -> str:
    review = report.get("review") or {}
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        "    path: data/train.parquet",
        f"task_categories: [{'text-generation' if fmt == 'sft' else 'reinforcement-learning'}]",
        "---",
        "",
        f"# {name}",
        "",
        f"Synthetic {'chat (SFT)' if fmt == 'sft' else 'preference (DPO)'} data, {rows:,} rows,"
        " cleaned with `openparity data clean`.",
        "",
        "## How it was cleaned",
        "",
    ]
    if report:
        lines += [
            f"- input lines: {report['lines']:,}; kept {report['kept']:,}, rejected"
            f" {report['rejected']:,}, quarantined (malformed) {report['quarantined']:,},"
            f" blank {report['blank']:,}",
            "- rejected by reason: " + _pairs(report["reasons"]),
            "- PII replaced: " + (_pairs(report["pii_replaced"]) or "none"),
            f"- benchmark items found in the data (removed): {len(report['contaminated_items'])}",
            f"- near-duplicate removal: {report.get('near_dedup') or 'off'}",
        ]
    else:
        lines.append("- no cleaning report was found next to the data")
    if review:
        lines += [
            "",
            "## Diversity and representation",
            "",
            f"- distinct-1 {review['distinct_1']:.3f}, distinct-2 {review['distinct_2']:.3f},"
            f" self-BLEU {review['self_bleu']} (sample of {review['sample']})",
        ]
        if review.get("embedding"):
            e = review["embedding"]
            lines.append(
                f"- embedding coverage {e['coverage']:.2f} (MiniLM, k-means on {e['sample']}"
                f" records), mean cosine {e['mean_cosine']:.2f}"
            )
        for axis, audit in review["representation"].items():
            lines.append(f"- {axis}: mentions {audit['mentions']}, skew {audit['skew']:.2f}")
        verdict = "passed" if review.get("passed") else "FAILED: " + "; ".join(review["failures"])
        lines.append(f"- review {verdict}")
    return "\n".join(lines) + "\n"


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {value:,}" for key, value in counts.items())
