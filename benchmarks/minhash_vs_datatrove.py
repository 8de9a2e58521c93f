"""MinHash near-dedup, side by side with datatrove's MinHash pipeline on the same corpus.

A generated corpus of text records (English words) with planted near duplicates: each a copy
of an earlier record with one word changed (shingle Jaccard 0.84-0.94). Both sides use word
5-gram shingles and 14 bands x 9 rows (126 hashes), one process / one task each. Prints
seconds, records/s, the share of planted pairs caught (one of the two removed) and records
removed that belong to no planted pair (false positives).

    python benchmarks/minhash_vs_datatrove.py --datatrove-python /path/to/venv/bin/python
        [--records 50000]

datatrove must be installed in that interpreter (`pip install "datatrove[processing]"`).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

from openparity.data.dedup import NearDedup
from openparity.data.records import Doc

VOCAB = [
    f"{w}{i}"
    for w in ("data", "model", "token", "graph", "value", "layer", "query")
    for i in range(300)
]

DATATROVE = textwrap.dedent(
    """
    import sys, time
    from datatrove.executor.local import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets,
        MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter

    data, work = sys.argv[1], sys.argv[2]
    config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=9)
    started = time.perf_counter()
    def run(pipeline, tasks=1):
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1,
                              logging_dir=f"{work}/logs/{len(str(time.time()))}{id(pipeline)}").run()
    run([JsonlReader(data, id_key="id"), MinhashDedupSignature(f"{work}/sigs", config=config)])
    run([MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=config)],
        tasks=config.num_buckets)
    run([MinhashDedupCluster(f"{work}/buckets", f"{work}/remove", config=config)])
    run([JsonlReader(data, id_key="id"),
         MinhashDedupFilter(f"{work}/remove", exclusion_writer=JsonlWriter(f"{work}/removed")),
         JsonlWriter(f"{work}/kept")])
    print(time.perf_counter() - started)
    """
)


def generate(path: Path, records: int, seed: int = 0) -> dict[str, str]:
    """Write {"id", "text"} records; returns planted copy id -> original id."""
    rng = random.Random(seed)
    originals: list[tuple[str, str]] = []
    pairs: dict[str, str] = {}
    with path.open("w", encoding="utf-8") as handle:
        for n in range(records):
            if originals and rng.random() < 0.05:
                source_id, text = rng.choice(originals)
                tokens = text.split()
                tokens[rng.randrange(len(tokens))] = "changed"
                text = " ".join(tokens)
                pairs[f"r{n}"] = source_id
            else:
                text = " ".join(rng.choice(VOCAB) for _ in range(rng.randint(60, 160)))
                originals.append((f"r{n}", text))
            handle.write(json.dumps({"id": f"r{n}", "text": text}) + "\n")
    return pairs


def score(removed: set[str], pairs: dict[str, str]) -> tuple[float, int]:
    caught = sum((copy in removed) != (original in removed) for copy, original in pairs.items())
    involved = set(pairs) | set(pairs.values())
    return caught / len(pairs), len(removed - involved)


def ours(path: Path) -> tuple[float, set[str]]:
    started = time.perf_counter()
    dedup, removed = NearDedup(threshold=0.8, num_perm=128), set()
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            row = json.loads(line)
            if dedup(Doc(str(path), number, row["id"], row, row["text"])):
                removed.add(row["id"])
    return time.perf_counter() - started, removed


def theirs(python: str, path: Path, work: Path) -> tuple[float, set[str]]:
    script = work / "datatrove_minhash.py"
    script.write_text(DATATROVE, encoding="utf-8")
    data = work / "input"
    data.mkdir()
    (data / path.name).symlink_to(path)
    ran = subprocess.run(
        [python, str(script), str(data), str(work / "dt")],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = float(ran.stdout.strip().splitlines()[-1])
    removed = set()
    for file in (work / "dt" / "removed").glob("*"):
        import gzip

        opener = gzip.open if file.suffix == ".gz" else open
        with opener(file, "rt", encoding="utf-8") as handle:
            removed |= {json.loads(line)["id"] for line in handle}
    return seconds, removed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--datatrove-python", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = work / "corpus.jsonl"
        pairs = generate(corpus, args.records)
        print(f"{args.records:,} records, {len(pairs):,} planted near duplicates")
        ours_s, ours_removed = ours(corpus)
        theirs_s, theirs_removed = theirs(args.datatrove_python, corpus, work)
        for name, seconds, removed in (
            ("openparity", ours_s, ours_removed),
            ("datatrove", theirs_s, theirs_removed),
        ):
            recall, false_positives = score(removed, pairs)
            print(
                f"{name:<11} {seconds:7.1f} s  {args.records / seconds:8,.0f} records/s"
                f"  pairs caught {recall:.3f}  false positives {false_positives}"
            )
        print(f"openparity / datatrove time: {ours_s / theirs_s:.2f}x")


if __name__ == "__main__":
    main()
