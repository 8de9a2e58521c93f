"""Local backend tokens/s vs calling llama-cpp-python directly, same prompt, same settings.

Target: ratio (openparity / direct) >= 0.95, i.e. the model layer adds nothing measurable.
Each side runs in its own process (two llama.cpp OpenMP thread teams in one process compete
for the cores and would distort both), and the sides alternate round by round so machine
drift hits them alike.

    python benchmarks/local_backend_throughput.py [--rounds 4] [--calls 3] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

PROMPT = "Write a detailed essay about the history of the printing press in Europe."
MESSAGES = [{"role": "user", "content": PROMPT}]


def measure(side: str, calls: int, max_tokens: int) -> list[float]:
    """tokens/s of `calls` greedy generations (after one warm-up) on one side."""
    if side == "direct":
        from llama_cpp import Llama

        from openparity.models.embedded import EMBEDDED_MODELS

        path = str(EMBEDDED_MODELS["smollm2-135m"].path())
        llm = Llama(model_path=path, n_ctx=4096, n_threads=os.cpu_count(), verbose=False)

        def once() -> int:
            out = llm.create_chat_completion(
                messages=MESSAGES, max_tokens=max_tokens, temperature=0.0
            )
            return out["usage"]["completion_tokens"]
    else:
        from openparity.models import ChatRequest, open_model

        model = open_model("local:smollm2-135m")
        request = ChatRequest(messages=MESSAGES, max_tokens=max_tokens, temperature=0.0)

        def once() -> int:
            return asyncio.run(model.generate(request)).completion_tokens

    once()
    rates = []
    for _ in range(calls):
        started = time.perf_counter()
        tokens = once()
        rates.append(tokens / (time.perf_counter() - started))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--side", choices=["direct", "openparity"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(measure(args.side, args.calls, args.max_tokens)))
        return

    rates: dict[str, list[float]] = {"direct": [], "openparity": []}
    for _ in range(args.rounds):
        for side in rates:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--side",
                    side,
                    "--calls",
                    str(args.calls),
                    "--max-tokens",
                    str(args.max_tokens),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            rates[side] += json.loads(out.stdout.strip().splitlines()[-1])
    d, o = statistics.median(rates["direct"]), statistics.median(rates["openparity"])
    n = len(rates["direct"])
    print(f"cores: {os.cpu_count()}  generations per side: {n}  max_tokens: {args.max_tokens}")
    labels = {"direct": "llama-cpp-python direct", "openparity": "openparity local backend"}
    for side, label in labels.items():
        q1, median, q3 = statistics.quantiles(rates[side], n=4)
        print(f"{label:25s}: {median:6.1f} tok/s median (IQR {q1:.1f}-{q3:.1f})")
    print(f"ratio openparity/direct  : {o / d:.3f}   (target >= 0.95)")


if __name__ == "__main__":
    main()
