"""Cleaning throughput: records/s per core of `openparity data clean` on a generated corpus of
200,000 chat records (English and Chinese, 2 % exact and 2 % near duplicates, some refusals,
PII and benchmark leaks planted), single process. Prints the time of each configuration:
  filters + toxicity + decontamination + PII + exact dedup   (the >= 2,000 records/s target)
  the whole pipeline: MinHash near dedup and the ethics review pass included
and the recall of the planted near duplicates.

    python benchmarks/data_clean_throughput.py [--records 200000]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from openparity.bench.tasks import get_task
from openparity.data.decontam import item_text
from openparity.data.pipeline import CleanSettings, clean

VOCAB = [
    f"{w}{i}"
    for w in ("data", "model", "token", "graph", "value", "layer", "query")
    for i in range(300)
]
CHINESE = "数据模型训练推理评估开源闭源成本质量路由检查回退缓存延迟吞吐"


def generate(path: Path, records: int, seed: int = 0) -> set[str]:
    """Write the corpus; returns the ids of the planted near duplicates."""
    rng = random.Random(seed)
    leaks = [item_text(i) for i in get_task("gsm8k").items()[:200]]
    planted, kept_texts = set(), []
    with path.open("w", encoding="utf-8") as handle:
        for n in range(records):
            roll = rng.random()
            if roll < 0.02 and kept_texts:
                answer = rng.choice(kept_texts)  # exact duplicate
            elif roll < 0.04 and kept_texts:
                answer = _edit_one_word(rng.choice(kept_texts), rng)
                planted.add(f"r{n}")
            elif roll < 0.045:
                answer = "I'm sorry, but I can't help with that request."
            elif roll < 0.05:
                answer = rng.choice(leaks)
            elif roll < 0.2:
                answer = "".join(rng.choice(CHINESE) for _ in range(120))
            else:
                answer = " ".join(rng.choice(VOCAB) for _ in range(rng.randint(60, 160)))
                if roll < 0.21:
                    answer += " Contact me at someone@example.com."
            if roll >= 0.05:  # only originals seed later copies: one edit from a kept record
                kept_texts.append(answer)
                if len(kept_texts) > 2000:
                    kept_texts.pop(0)
            messages = [
                {"role": "user", "content": f"Question {n}"},
                {"role": "assistant", "content": answer},
            ]
            row = {"id": f"r{n}", "messages": messages}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return planted


def _edit_one_word(text: str, rng: random.Random) -> str:
    """The text with one word (one character, for Chinese) replaced."""
    tokens = text.split()
    if len(tokens) == 1:  # Chinese: no spaces
        position = rng.randrange(len(text))
        return text[:position] + "改" + text[position + 1 :]
    tokens[rng.randrange(len(tokens))] = "changed"
    return " ".join(tokens)


def run(name: str, source: Path, out: Path, settings: CleanSettings, planted: set[str]) -> None:
    started = time.perf_counter()
    report = clean([source], out, settings)
    seconds = time.perf_counter() - started
    rejected = {json.loads(line)["id"] for line in (out / "rejected.jsonl").open()}
    recall = len(planted & rejected) / len(planted) if planted else float("nan")
    print(
        f"{name:<44} {seconds:7.1f} s  {report.lines / seconds:8,.0f} records/s"
        f"  kept {report.kept:,}  near-dup recall {recall:.3f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--near-index", default="memory", help="memory or disk")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        source = directory / "corpus.jsonl"
        planted = generate(source, args.records)
        print(f"{args.records:,} records, {source.stat().st_size / 1e6:.0f} MB, one process")
        fast = CleanSettings(near_threshold=None, review=None)
        run("filters + decontamination + PII + exact dedup", source, directory / "a", fast, set())
        run(
            "+ MinHash near dedup + ethics review",
            source,
            directory / "b",
            CleanSettings(near_index=args.near_index),
            planted,
        )
    print(f"peak memory of this process: {peak_rss_mb():,.0f} MB (near index: {args.near_index})")


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
