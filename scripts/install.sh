#!/usr/bin/env bash
# Create ./.venv and install openparity with every extra (what both README commands start with).
#
# llama.cpp is compiled here (llama-cpp-python builds from source). It is built for a portable
# CPU baseline, never for the build machine (GGML_NATIVE): a native build on a CPU that
# advertises AMX without the OS enabling it dies with a segfault on the first multi-token decode.
# The wheel is kept in a cache keyed by the version, the architecture and the CMake arguments,
# so a wheel built with other arguments (pip's own cache ignores CMAKE_ARGS) is never reused.
# Set CMAKE_ARGS to choose other llama.cpp options (e.g. -DGGML_CUDA=on); they replace ours.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
build_info() { "$PYTHON" src/openparity/models/llama_build.py "$1"; }
LLAMA_VERSION="$(build_info version)"

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/pip install --quiet torch==2.13.0          # CPU build; satisfies the [train] range

cmake_args="${CMAKE_ARGS:-$(build_info cmake-args)}"
key="$(printf '%s|%s|%s' "$LLAMA_VERSION" "$(uname -m)" "$cmake_args" | sha256sum | cut -c1-16)"
wheels="${XDG_CACHE_HOME:-$HOME/.cache}/openparity/llama-wheels/$key"
if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "building llama.cpp (llama-cpp-python $LLAMA_VERSION, CMAKE_ARGS: $cmake_args); about 5 min on 2 cores" >&2
  mkdir -p "$wheels.partial"
  CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" .venv/bin/pip wheel --quiet \
    --no-deps --no-cache-dir --no-binary llama-cpp-python -w "$wheels.partial" \
    "llama-cpp-python==$LLAMA_VERSION"
  rm -rf "$wheels" && mv "$wheels.partial" "$wheels"
fi
printf '%s\n' "$cmake_args" >"$wheels/CMAKE_ARGS"
.venv/bin/pip install --quiet --force-reinstall --no-deps "$wheels"/llama_cpp_python-*.whl
.venv/bin/pip install --quiet -e ".[all,dev]"
# DeepSpeed (`openparity align --deepspeed zero2|zero3`) ships only as source, and its build
# imports torch: without build isolation it uses the torch above instead of fetching a CUDA one.
# Its kernels are compiled on first use (ninja), not here.
.venv/bin/pip install --quiet setuptools wheel
DS_BUILD_OPS=0 .venv/bin/pip install --quiet --no-build-isolation "deepspeed==0.19.8"
.venv/bin/openparity bench install-data               # benchmark files with conflicting pins
