"""Splitting one dataset into members, for simulations and comparisons only (in a real
alliance each member brings its own data).

- `iid`: each record goes to member hash(id) mod N: every member sees the same mixture.
- a field name (e.g. `topic`): records are grouped by that field's value and whole groups are
  dealt to members, largest first, each to the member with the fewest records so far; members
  then hold different topics (non-IID), as organisations do.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from openparity.align.examples import read_records
from openparity.atomic import write_atomic
from openparity.federated.errors import FederatedError
from openparity.federated.member import data_file


def split_members(source: Path, members: int, split: str, out: Path) -> list[Path]:
    """Write `members` JSONL files under `out` and return their paths."""
    if members < 2:
        raise FederatedError("--members must be at least 2 to split one dataset")
    records = [record for _, record in read_records(data_file(str(source)))]
    shards = _iid(records, members) if split == "iid" else _by_field(records, members, split)
    paths = []
    for index, shard in enumerate(shards):
        if not shard:
            raise FederatedError(
                f"member {index} would get no records from a {split!r} split of {len(records)}",
                hint="use fewer --members or --split iid",
            )
        path = out / f"member-{index}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in shard))
        paths.append(path)
    return paths


def _iid(records: list[dict[str, Any]], members: int) -> list[list[dict[str, Any]]]:
    shards: list[list[dict[str, Any]]] = [[] for _ in range(members)]
    for number, record in enumerate(records):
        key = str(record.get("id", number)).encode()
        shards[int(hashlib.sha256(key).hexdigest()[:8], 16) % members].append(record)
    return shards


def _by_field(
    records: list[dict[str, Any]], members: int, field: str
) -> list[list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if field not in record:
            raise FederatedError(
                f"a record has no {field!r} field to split by",
                hint="--split iid, or a field every record has (e.g. topic)",
            )
        groups.setdefault(str(record[field]), []).append(record)
    if len(groups) < members:
        raise FederatedError(f"{len(groups)} values of {field!r} cannot make {members} members")
    shards: list[list[dict[str, Any]]] = [[] for _ in range(members)]
    for _, group in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        min(shards, key=len).extend(group)
    return shards
