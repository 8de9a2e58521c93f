#!/usr/bin/env bash
# Install everything into ./.venv, then run lint, format check and the whole test suite.
# Works on a fresh machine with Python 3.11 and the package registries. The first build of
# llama-cpp-python compiles llama.cpp (minutes); pip caches the wheel for later runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/pip install --quiet torch==2.13.0          # CPU build; satisfies the [train] range
CMAKE_ARGS="${CMAKE_ARGS:--DLLAMA_CURL=OFF}" .venv/bin/pip install --quiet -e ".[all,dev]"
.venv/bin/openparity bench install-data               # benchmark files with conflicting pins

# The HTML report test renders pages in Debian's headless Chromium.
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: sudo apt-get install chromium" >&2; exit 1
  fi
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/pytest "$@"
