"""Curriculum against random order at equal steps, measured the way every gap is: paired, on the
same held-out items.

  1. the format experiment's data (examples/align/gsm8k_format.py): SFT records from GSM8K items
     --train, a held-out format-compliance task on items --heldout;
  2. the difficulty: the base model's own results on the training questions (`bench run` of a
     numeric-answer task over them; an item it solves is easy);
  3. two LoRA SFT runs with the same seed, steps and batch: `--curriculum RUN` (easiest first)
     and the Trainer's random order;
  4. `openparity gap --open CURRICULUM --base RANDOM` on the held-out task: compliance of each
     arm, the paired difference with its CI and p.

    python benchmarks/align_curriculum.py [--train 600:728] [--heldout 0:60] [--steps 8]

About ten CPU minutes on two cores with the defaults (two trainings, three model runs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPENPARITY = [sys.executable, "-m", "openparity.cli"]

SOLVE_TASK = """\
name: gsm8k-train-solve
description: the training questions, scored by the final number (the base model's difficulty)
data: solve.jsonl
id_field: id
reference_field: answer
prompt: "{question}"
scorer: {type: numeric}
max_tokens: 256
"""


def run(*args: str) -> str:
    done = subprocess.run([*map(str, args)], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        sys.exit(f"failed: {' '.join(map(str, args))}\n{done.stderr[-3000:]}")
    return done.stdout


def write_solve_task(where: Path, span: str) -> Path:
    """The training questions as a task with the GSM8K item ids the SFT records carry."""
    from openparity.bench.tasks.gsm8k import GSM8K, gold_answer

    _, records = GSM8K(None).records()
    first, last = map(int, span.split(":"))
    with open(where / "solve.jsonl", "w", encoding="utf-8") as handle:
        for index in range(first, last):
            row = {
                "id": f"gsm8k/{index}",
                "question": records[index]["question"],
                "answer": gold_answer(records[index]["answer"]),
            }
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    (where / "solve.yaml").write_text(SOLVE_TASK, encoding="utf-8")
    return where / "solve.yaml"


def train(where: Path, name: str, args: argparse.Namespace, *extra: str) -> Path:
    shown = run(
        *OPENPARITY,
        "align",
        "sft",
        "--data",
        where / "train.jsonl",
        "--output",
        where / name,
        "--steps",
        args.steps,
        "--batch-size",
        args.batch,
        "--lr",
        "5e-4",
        "--max-length",
        "320",
        "--seed",
        args.seed,
        "--decontaminate",
        where / "gsm8k-format.yaml",
        "--gguf",
        "--json",
        *extra,
    )
    return Path(json.loads(shown)["gguf"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default="600:728", help="GSM8K items for training")
    parser.add_argument("--heldout", default="0:60", help="GSM8K items for the held-out task")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base", default="smollm2-135m")
    parser.add_argument("--keep", type=Path, help="Work in this folder (default: a temporary one)")
    args = parser.parse_args()
    where = args.keep or Path(tempfile.mkdtemp(prefix="align-curriculum-"))
    where.mkdir(parents=True, exist_ok=True)
    store = where / "runs.sqlite"
    run(
        sys.executable,
        ROOT / "examples/align/gsm8k_format.py",
        where,
        "--train",
        args.train,
        "--heldout",
        args.heldout,
    )

    print(f"difficulty: local:{args.base} on the {args.train} training questions ...", flush=True)
    solve = write_solve_task(where, args.train)
    difficulty = json.loads(
        run(*OPENPARITY, "bench", "run", f"local:{args.base}", solve, "--store", store, "--json")
    )
    n = difficulty["scored_items"]
    print(f"  run {difficulty['run_id']}: solved {round((difficulty['score'] or 0) * n)} of {n}")

    print(f"training two arms, {args.steps} steps x {args.batch}, seed {args.seed} ...", flush=True)
    curriculum = train(
        where, "curriculum", args, "--curriculum", difficulty["run_id"], "--store", store
    )
    random_order = train(where, "random", args)

    first, last = map(int, args.heldout.split(":"))
    report = json.loads(
        run(
            *OPENPARITY,
            "gap",
            "--open",
            f"local:{curriculum}",
            "--base",
            f"local:{random_order}",
            "--tasks",
            where / "gsm8k-format.yaml",
            "--limit",
            last - first,
            "--store",
            store,
            "--format",
            "json",
        )
    )
    moved = report["training"][0]
    n, change = moved["change"]["n"], moved["change"]
    low, high = change["bootstrap_ci95"]
    print(f"held-out format compliance, {n} items (GSM8K {args.heldout}):")
    print(f"  random order  {moved['base']['mean']:.1%}")
    print(f"  curriculum    {moved['trained']['mean']:.1%}")
    print(
        f"  curriculum - random: {change['mean'] * 100:+.1f} points,"
        f" 95% CI [{low * 100:+.1f}, {high * 100:+.1f}], p = {moved['p_difference']:.3g}"
        f" ({moved['verdict']})"
    )
    print(f"work folder: {where}")


if __name__ == "__main__":
    main()
