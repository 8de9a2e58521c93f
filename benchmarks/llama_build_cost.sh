#!/usr/bin/env bash
# What openparity's portable llama.cpp build costs against a native (GGML_NATIVE) build of the
# same source: both built here, then llama-bench on the same model, taking turns, printing
# prompt-processing and generation tokens/s and the ratio portable / native. A native build
# that crashes on this CPU (AMX advertised but not enabled) is reported as such.
#
#   bash benchmarks/llama_build_cost.sh LLAMA_CPP_SOURCE_DIR MODEL.gguf [THREADS ...]
#
# LLAMA_CPP_SOURCE_DIR: llama.cpp sources (e.g. vendor/llama.cpp of the llama-cpp-python sdist).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$1 model=$2
shift 2
threads=("$@")
[ ${#threads[@]} -gt 0 ] || threads=(2 "$(nproc)")
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
portable="$(python3 src/openparity/models/llama_build.py cmake-args)"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "cpu flags: $(grep -m1 -o -w -E 'amx_tile|amx_int8|amx_bf16|avx512f|avx512_vnni|avx2' /proc/cpuinfo \
  | sort -u | xargs) (amx: $(grep -c -w amx_tile /proc/cpuinfo) of $(nproc) cpus)"
for kind in portable native; do
  if [ "$kind" = native ]; then args="-DGGML_NATIVE=ON -DLLAMA_CURL=OFF"; else args="$portable"; fi
  started=$(date +%s)
  # shellcheck disable=SC2086 # the CMake arguments are separate words
  cmake -S "$src" -B "$work/$kind" -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_CUDA=OFF $args >"$work/$kind.log" 2>&1
  cmake --build "$work/$kind" --target llama-bench -j "$(nproc)" >>"$work/$kind.log" 2>&1
  echo "built $kind in $(( $(date +%s) - started )) s: $args"
done
for round in 1 2; do
  for kind in portable native; do
    for t in "${threads[@]}"; do
      out="$work/$kind-$t-$round.json"
      if ! "$work/$kind/bin/llama-bench" -m "$model" -t "$t" -p 512 -n 128 -r 3 -o json \
        >"$out" 2>"$work/$kind-$t.err"; then
        echo "$kind build, $t threads: llama-bench failed (exit $?): $(tail -1 "$work/$kind-$t.err")"
        rm -f "$out"
      fi
    done
  done
done
python3 - "$work" "${threads[@]}" <<'EOF'
import json, pathlib, statistics, sys

work, threads = pathlib.Path(sys.argv[1]), sys.argv[2:]
rates = {}
for path in work.glob("*.json"):
    kind, t, _ = path.stem.split("-")
    for row in json.loads(path.read_text() or "[]"):
        test = "prefill" if row["n_prompt"] else "generate"
        rates.setdefault((kind, t, test), []).append(row["avg_ts"])
for t in threads:
    for test in ("prefill", "generate"):
        p, n = rates.get(("portable", t, test)), rates.get(("native", t, test))
        if not p or not n:
            print(f"{t:>3} threads {test:8s}: no result for {'portable' if not p else 'native'}")
            continue
        p, n = statistics.median(p), statistics.median(n)
        print(f"{t:>3} threads {test:8s}: portable {p:8.1f} tok/s, native {n:8.1f} tok/s,"
              f" ratio portable/native {p / n:.3f}")
EOF
