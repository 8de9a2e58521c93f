"""Local backend tokens/s vs calling llama-cpp-python directly, same prompt, same settings;
optionally against another llama.cpp build (what the portable build costs against a native one).

Targets: ratio (openparity / direct) >= 0.95, i.e. the model layer adds nothing measurable.
With `--other-build DIR` (a llama-cpp-python installed with `pip install --target DIR`, e.g. a
GGML_NATIVE build), the installed build's generation and prompt-processing tokens/s are
printed as a ratio to that build's.

Each side runs in its own process (two llama.cpp OpenMP thread teams in one process compete
for the cores and would distort both), and the sides alternate round by round so machine
drift hits them alike.

    python benchmarks/local_backend_throughput.py [--rounds 4] [--calls 3] [--max-tokens 128]
        [--other-build DIR]
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
LONG_PROMPT = " ".join(
    f"Item {i}: the printing press changed how books were made." for i in range(40)
)


def measure(side: str, calls: int, max_tokens: int) -> dict[str, list[float]]:
    """Generation tokens/s of `calls` greedy generations (after one warm-up) on one side, and
    for the direct sides prompt-processing tokens/s of a ~600-token prompt."""
    if side == "openparity":
        from openparity.models import ChatRequest, open_model

        model = open_model("local:smollm2-135m")
        request = ChatRequest(messages=MESSAGES, max_tokens=max_tokens, temperature=0.0)

        def once() -> int:
            return asyncio.run(model.generate(request)).completion_tokens

        return {"generate": _rates(once, calls)}

    from llama_cpp import Llama

    from openparity.models.embedded import EMBEDDED_MODELS

    path = str(EMBEDDED_MODELS["smollm2-135m"].path())
    llm = Llama(model_path=path, n_ctx=4096, n_threads=os.cpu_count(), verbose=False)

    def generate() -> int:
        out = llm.create_chat_completion(messages=MESSAGES, max_tokens=max_tokens, temperature=0.0)
        return out["usage"]["completion_tokens"]

    tokens = llm.tokenize(LONG_PROMPT.encode())

    def prefill() -> int:
        llm.reset()  # no prefix reuse: the whole prompt is evaluated
        llm.eval(tokens)
        return len(tokens)

    return {"generate": _rates(generate, calls), "prefill": _rates(prefill, calls)}


def _rates(once, calls: int) -> list[float]:
    once()
    rates = []
    for _ in range(calls):
        started = time.perf_counter()
        tokens = once()
        rates.append(tokens / (time.perf_counter() - started))
    return rates


def _run_side(side: str, args: argparse.Namespace) -> dict[str, list[float]]:
    env = dict(os.environ)
    if side == "other build":  # the other llama_cpp shadows the installed one
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.other_build, env.get("PYTHONPATH")]))
        side = "direct"
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
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(rates: list[float]) -> str:
    q1, median, q3 = statistics.quantiles(rates, n=4)
    return f"{median:7.1f} tok/s median (IQR {q1:.1f}-{q3:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--other-build", help="A llama-cpp-python installed with pip --target.")
    parser.add_argument("--side", choices=["direct", "openparity"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(measure(args.side, args.calls, args.max_tokens)))
        return

    sides = ["direct", "openparity"] + (["other build"] if args.other_build else [])
    rates: dict[str, dict[str, list[float]]] = {s: {} for s in sides}
    for _ in range(args.rounds):
        for side in sides:
            for kind, values in _run_side(side, args).items():
                rates[side].setdefault(kind, []).extend(values)
    n = len(rates["direct"]["generate"])
    print(f"cores: {os.cpu_count()}  calls per side: {n}  max_tokens: {args.max_tokens}")
    for side in sides:
        for kind, values in rates[side].items():
            print(f"{side:12s} {kind:8s}: {_summary(values)}")
    median = {s: {k: statistics.median(v) for k, v in r.items()} for s, r in rates.items()}
    ratio = median["openparity"]["generate"] / median["direct"]["generate"]
    print(f"ratio openparity/direct generate      : {ratio:.3f}   (target >= 0.95)")
    if args.other_build:
        for kind in ("generate", "prefill"):
            ratio = median["direct"][kind] / median["other build"][kind]
            print(f"ratio installed/other build {kind:9s}: {ratio:.3f}")


if __name__ == "__main__":
    main()
