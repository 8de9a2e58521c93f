#!/usr/bin/env bash
# Install everything into ./.venv, prove the embedded model runs, then run lint, format check
# and the whole test suite. Works on a fresh machine with Python 3.11 and the package
# registries. The first install compiles llama.cpp (minutes); later installs reuse the build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh

# The HTML report test renders pages in Debian's headless Chromium; the sandbox tests also run
# every hostile program as the user nobody (setpriv), with Debian's python3.11; the gateway's
# replica and ledger tests start a real redis-server and PostgreSQL server.
missing=()
command -v chromium >/dev/null || missing+=(chromium)
[ -x /usr/bin/python3.11 ] || missing+=(python3.11)
command -v setpriv >/dev/null || missing+=(util-linux)
command -v redis-server >/dev/null || missing+=(redis-server)  # gateway replicas' shared state
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  || missing+=(postgresql)                                      # the gateway's PostgreSQL ledger
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]} (sudo apt-get install ${missing[*]})" >&2; exit 1
  fi
fi

# The README's main job, shortened, and a multi-token chat: a llama.cpp build that crashes on
# this CPU fails here with one clear line rather than somewhere in the tests.
smoke="$(mktemp -d)"
smoke_failed() { echo "smoke test failed: $1 (openparity doctor shows why)" >&2; exit 1; }
.venv/bin/openparity chat local:smollm2-135m "Name three colours of the rainbow." \
  --max-tokens 16 || smoke_failed "openparity chat on the embedded model"
.venv/bin/openparity gap --limit 2 --store "$smoke/runs.sqlite" --output "$smoke/gap.html" \
  >/dev/null || smoke_failed "openparity gap --limit 2"
rm -rf "$smoke"

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/pytest "$@"
