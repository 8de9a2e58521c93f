"""Prove that the installed llama.cpp build runs on this CPU before a model is loaded in-process.

A llama.cpp build for the wrong CPU does not raise an error: the process dies (SIGSEGV,
SIGILL) on the first multi-token decode, while a one-token decode still works. So the first use
of each build decodes a real multi-token prompt in a subprocess and records the outcome per
build (llama-cpp-python version + its compiled libraries). A build whose probe crashed refuses
to load, with one line that says how to rebuild, instead of taking the user's process down.

`python -m openparity.models.llama_probe MODEL.gguf` is the probe itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from openparity.cpus import cpu_threads
from openparity.errors import OpenparityError
from openparity.models.errors import LlamaBuildCrashError
from openparity.models.llama_build import rebuild_command

PROBE_PROMPT = "List the four seasons of the year, separated by commas:"
PROBE_TOKENS = 8
PROBE_TIMEOUT_S = 300.0
_CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGILL, signal.SIGBUS, signal.SIGFPE, signal.SIGABRT}


@dataclass(frozen=True)
class ProbeResult:
    """What one probe run found. `crashed`: the decode killed the process (a build problem);
    `ok` False without a crash is a model or setup problem, left to the normal load to report."""

    build: str
    ok: bool
    crashed: bool
    detail: str
    seconds: float

    def error(self) -> LlamaBuildCrashError:
        return LlamaBuildCrashError(
            f"llama.cpp crashed in a test decode ({self.detail}): this llama-cpp-python build "
            "does not run on this CPU (a build for another CPU, e.g. GGML_NATIVE with AMX)",
            hint=f"rebuild it portably: {rebuild_command()} (or rerun bash scripts/install.sh)",
        )


def build_id() -> str:
    """llama-cpp-python's version and a digest of its compiled libraries' names, sizes and
    modification times: a rebuild or reinstall is a new build."""
    version = importlib.metadata.version("llama-cpp-python")
    spec = importlib.util.find_spec("llama_cpp")
    digest = hashlib.sha256(version.encode())
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        for lib in sorted(root.rglob("*")):
            if lib.suffix in {".so", ".dylib", ".dll"} or ".so." in lib.name:
                stat = lib.stat()
                digest.update(f"{lib.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return f"{version}-{digest.hexdigest()[:16]}"


def record_path() -> Path:
    """Where probe outcomes are kept: $OPENPARITY_CACHE_DIR, else the user's cache folder."""
    from openparity.cachedir import user_cache_dir

    return user_cache_dir() / "llama-probe.json"


def recorded(build: str) -> ProbeResult | None:
    try:
        entry = json.loads(record_path().read_text(encoding="utf-8")).get(build)
        return ProbeResult(**entry) if entry else None
    except (OSError, ValueError, TypeError, AttributeError):
        return None  # no record, or an unreadable one: probe again


def _record(result: ProbeResult) -> None:
    from openparity.atomic import write_atomic

    path = record_path()
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
        records = records if isinstance(records, dict) else {}
    except (OSError, ValueError):
        records = {}
    records[result.build] = asdict(result)
    with contextlib.suppress(OpenparityError):  # read-only cache: the next process probes again
        write_atomic(path, json.dumps(records, indent=1))


def probe_command(model_path: Path) -> list[str]:
    return [sys.executable, "-m", "openparity.models.llama_probe", str(model_path)]


def run_probe(model_path: Path, *, timeout_s: float = PROBE_TIMEOUT_S) -> ProbeResult:
    """Decode a multi-token prompt in a subprocess and record what happened."""
    build = build_id()
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            probe_command(model_path), capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        seconds = time.perf_counter() - started
        return ProbeResult(build, False, False, f"no answer in {timeout_s:.0f} s", seconds)
    seconds = time.perf_counter() - started
    if proc.returncode < 0 and -proc.returncode in {int(s) for s in _CRASH_SIGNALS}:
        name = signal.Signals(-proc.returncode).name
        result = ProbeResult(build, False, True, f"{name} decoding a multi-token prompt", seconds)
    elif proc.returncode == 0:
        result = ProbeResult(build, True, False, proc.stdout.strip(), seconds)
    else:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return ProbeResult(build, False, False, last, seconds)  # not the build's fault: unrecorded
    _record(result)
    return result


def ensure_build_runs(model_path: Path) -> None:
    """Raise LlamaBuildCrashError when this build is known (or now found) to crash here.

    Probes once per build with the embedded model when it is installed (small and fast),
    else with `model_path`.
    """
    if os.environ.get("OPENPARITY_SKIP_LLAMA_PROBE") == "1":
        return
    result = recorded(build_id())
    if result is None:
        result = run_probe(_probe_model(model_path))
    if result.crashed:
        raise result.error()


def _probe_model(fallback: Path) -> Path:
    from openparity.models.embedded import DEFAULT_LOCAL_MODEL, EMBEDDED_MODELS

    try:
        return EMBEDDED_MODELS[DEFAULT_LOCAL_MODEL.split(":", 1)[1]].path()
    except OpenparityError:
        return fallback


def _decode(model_path: str) -> str:
    from llama_cpp import Llama

    llm = Llama(model_path=model_path, n_ctx=512, n_threads=cpu_threads(), verbose=False)
    prompt_tokens = len(llm.tokenize(PROBE_PROMPT.encode("utf-8")))
    out = llm.create_completion(PROBE_PROMPT, max_tokens=PROBE_TOKENS, temperature=0.0)
    produced = out["usage"]["completion_tokens"]
    llm.close()
    return f"decoded {prompt_tokens} prompt tokens and generated {produced}"


if __name__ == "__main__":
    print(_decode(sys.argv[1]))
