"""Run untrusted (model-written) Python in isolation: no network, private filesystem, limits.

Each program runs in a fresh process tree set up by `sandbox_launcher.py`: its own network,
mount and PID namespaces, a new session, an empty work dir on a private tmpfs, homes and temp
dirs hidden, the rest of the filesystem read-only, a scrubbed environment (no API keys), the
user `nobody` when started as root, rlimits on CPU, memory, file size, open files and processes,
and a wall-clock timeout after which the whole tree is killed. When the kernel refuses any of
that, nothing runs: `SandboxUnavailableError`, unless the caller explicitly opts out with
`isolate=False` (rlimits and a temp dir only: for trusted code such as canonical solutions).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from openparity.bench.errors import SandboxUnavailableError

LAUNCHER = Path(__file__).with_name("sandbox_launcher.py")
SETUP_FAILED = 97
Status = Literal["passed", "failed", "timeout", "memory", "output_limit", "killed"]


@dataclass(frozen=True)
class Limits:
    cpu_s: int = 10
    wall_s: float = 20.0
    memory_mb: int = 1024
    file_mb: int = 16
    open_files: int = 64
    processes: int = 64
    tmpfs_mb: int = 64
    output_bytes: int = 64_000


@dataclass(frozen=True)
class Verdict:
    """How a program ended. Only `passed` means it ran to completion with exit status 0."""

    status: Status
    exit_code: int | None
    stdout: str
    stderr: str
    wall_s: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def reason(self) -> str:
        if self.status == "failed":
            last = self.stderr.strip().splitlines()[-1:] or [f"exit {self.exit_code}"]
            return f"failed: {last[0][:200]}"
        return self.status


class Sandbox:
    """Runs Python programs in isolation, at most `parallel` at a time."""

    def __init__(
        self, limits: Limits | None = None, *, isolate: bool = True, parallel: int | None = None
    ) -> None:
        self.limits = limits or Limits()
        self.isolate = isolate
        self._slots = asyncio.Semaphore(parallel or os.cpu_count() or 1)
        self._python = os.path.realpath(sys.executable)  # the base interpreter, not a venv shim

    def _launcher_config(self) -> dict[str, object]:
        lim = self.limits
        home_dirs = [str(Path.home()), "/root", "/home", "/run/user"]
        base = os.path.realpath(sys.base_prefix)
        return {
            "workdir": "/tmp/sandbox",
            "hide": ["/tmp", "/var/tmp", "/dev/shm", *dict.fromkeys(home_dirs)],
            "bind": [base] if any(base.startswith(h + "/") for h in home_dirs) else [],
            "python": self._python,
            "cpu_s": lim.cpu_s,
            "memory_mb": lim.memory_mb,
            "file_mb": lim.file_mb,
            "open_files": lim.open_files,
            "processes": lim.processes,
            "tmpfs_mb": lim.tmpfs_mb,
        }

    async def run(self, program: str) -> Verdict:
        """Run one program; returns its verdict (raises only when isolation is impossible)."""
        async with self._slots:
            if self.isolate:
                argv = [
                    self._python,
                    "-I",
                    "-S",
                    str(LAUNCHER),
                    json.dumps(self._launcher_config()),
                ]
                return await self._execute(argv, program.encode("utf-8"), cwd=None)
            with tempfile.TemporaryDirectory(prefix="openparity-unsandboxed-") as workdir:
                path = Path(workdir, "main.py")
                path.write_text(program, encoding="utf-8")
                argv = [self._python, "-I", "-B", str(path)]
                return await self._execute(argv, b"", cwd=workdir, limits_in_child=True)

    async def _execute(
        self, argv: list[str], stdin: bytes, *, cwd: str | None, limits_in_child: bool = False
    ) -> Verdict:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
            preexec_fn=self._child_limits if limits_in_child else None,
        )
        readers = [
            asyncio.ensure_future(_read_bounded(s, self.limits.output_bytes))
            for s in (process.stdout, process.stderr)
        ]
        timed_out = False
        try:
            process.stdin.write(stdin)
            await process.stdin.drain()
            process.stdin.close()
            await asyncio.wait_for(process.wait(), self.limits.wall_s)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            timed_out = process.returncode is None
        finally:
            if process.returncode is None:
                _kill_group(process.pid)
                await process.wait()
        stdout, stderr = [await r for r in readers]
        elapsed = time.monotonic() - started
        code = process.returncode
        if code == SETUP_FAILED and stderr.startswith("sandbox:"):
            raise SandboxUnavailableError(
                f"the sandbox could not isolate the program ({stderr.strip()})",
                hint="run where namespaces are allowed (root or unprivileged user namespaces),"
                " or pass --unsafe-no-sandbox to run model code unisolated at your own risk",
            )
        return Verdict(_status(code, stderr, timed_out), code, stdout, stderr, elapsed)

    def _child_limits(self) -> None:  # only for the explicit unisolated mode
        import resource

        mb = 1024 * 1024
        resource.setrlimit(resource.RLIMIT_CPU, (self.limits.cpu_s, self.limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (self.limits.memory_mb * mb,) * 2)
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.limits.file_mb * mb,) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _status(code: int | None, stderr: str, timed_out: bool) -> Status:
    # Isolated runs report a signal as 128 + signal; unisolated ones as a negative code.
    sig = -code if code is not None and code < 0 else (code - 128 if code and code > 128 else 0)
    if timed_out or sig == signal.SIGXCPU:
        return "timeout"
    if sig == signal.SIGXFSZ or "File too large" in stderr:
        return "output_limit"
    if code == 0:
        return "passed"
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr:
        return "memory"
    return "killed" if sig else "failed"


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


async def _read_bounded(stream: asyncio.StreamReader | None, limit: int) -> str:
    """Read a stream to its end, keeping at most `limit` bytes (the rest is drained)."""
    if stream is None:
        return ""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return kept.decode("utf-8", errors="replace")
