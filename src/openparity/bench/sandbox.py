"""Run untrusted (model-written) Python in isolation: no network, private filesystem, limits.

Each program runs in a fresh process tree set up by `sandbox_launcher.py`: its own network,
mount and PID namespaces, a new session, a new root holding only the system and Python
directories (read-only all the way down) with an empty work dir on a private tmpfs, a scrubbed
environment (no API keys), the user `nobody` when started as root, rlimits on CPU, memory, file
size and open files, memory and process limits for the whole tree through cgroups where they
can be made (`cgroups.py`), and a wall-clock timeout after which the whole tree is killed. When
the kernel refuses any of that, nothing runs: `SandboxUnavailableError`, unless the caller
explicitly opts out with `isolate=False` (rlimits and a temp dir only: for trusted code such as
canonical solutions).

A program passes only when it ran to its end: `sandbox_runner.py` runs it and writes a per-run
secret nonce to a pipe of its own after the program's last line returned; exit status 0 alone
(an early `sys.exit(0)`) is not a pass. Setup failures come back on a status pipe that is
closed before the program starts, so a program cannot fake one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from openparity.bench.cgroups import TreeLimits, tree_limits
from openparity.bench.errors import SandboxUnavailableError

LAUNCHER = Path(__file__).with_name("sandbox_launcher.py")
RUNNER = Path(__file__).with_name("sandbox_runner.py")
# what a program sees of the host, read-only; everything else does not exist for it
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc")
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
class SandboxOutcome:
    """How a program ended. Only `passed` means it ran to its end (the runner's nonce came
    back on its own pipe) and exited with status 0."""

    status: Status
    exit_code: int | None
    stdout: str
    stderr: str
    wall_s: float
    completed: bool = False  # main.py returned normally: its last line ran

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def reason(self) -> str:
        if self.status == "failed":
            if self.exit_code == 0 and not self.completed:
                return "failed: exited before its tests finished"
            last = self.stderr.strip().splitlines()[-1:] or [f"exit {self.exit_code}"]
            return f"failed: {last[0][:200]}"
        return self.status


class Sandbox:
    """Runs Python programs in isolation, at most `parallel` at a time."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        isolate: bool = True,
        parallel: int | None = None,
        expose: tuple[str, ...] = (),
    ) -> None:
        self.limits = limits or Limits()
        self.isolate = isolate
        self.expose = expose  # extra host dirs the program may read (read-only)
        # read-only by one remount per mount, as on kernels before mount_setattr (5.12)
        self.legacy_remount = False
        self._cgroups_work = True
        self._slots = asyncio.Semaphore(parallel or os.cpu_count() or 1)
        self._python = os.path.realpath(sys.executable)  # the base interpreter, not a venv shim

    def _launcher_config(self, status_fd: int, result_fd: int) -> dict[str, object]:
        lim = self.limits
        return {
            "workdir": "/tmp/sandbox",
            "expose": self._exposed(),
            "python": self._python,
            "cpu_s": lim.cpu_s,
            "memory_mb": lim.memory_mb,
            "file_mb": lim.file_mb,
            "open_files": lim.open_files,
            "processes": lim.processes,
            "tmpfs_mb": lim.tmpfs_mb,
            "status_fd": status_fd,
            "result_fd": result_fd,
            "legacy_remount": self.legacy_remount,
        }

    def _tree_limits(self) -> TreeLimits | None:
        """This run's cgroup; after the first refusal, per-process rlimits only."""
        if not self._cgroups_work:
            return None
        tree = tree_limits(self.limits.memory_mb, self.limits.processes)
        self._cgroups_work = tree is not None
        return tree

    def _exposed(self) -> list[str]:
        """Host paths the program sees, read-only: the system dirs and the Python install."""
        paths = [*SYSTEM_DIRS, os.path.realpath(sys.base_prefix),
                 os.path.dirname(self._python), *self.expose]  # fmt: skip
        kept: list[str] = []
        for path in sorted(dict.fromkeys(paths), key=len):
            if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
                kept.append(path)
        return kept

    async def run(self, program: str) -> SandboxOutcome:
        """Run one program; returns how it ended (raises only when isolation is impossible)."""
        nonce = secrets.token_hex(16).encode()
        async with self._slots:
            with _Pipe() as status, _Pipe() as result:
                if self.isolate:
                    tree = self._tree_limits()
                    config = self._launcher_config(status.write, result.write)
                    config["cgroup_procs"] = tree.procs if tree else []
                    # RLIMIT_NPROC counts every process of the user (nobody), other runs' too:
                    # only a fallback where no pids cgroup bounds this run's tree alone
                    config["nproc_rlimit"] = tree is None
                    argv = [self._python, "-I", "-S", str(LAUNCHER), json.dumps(config)]
                    stdin = nonce + b"\n" + program.encode("utf-8")
                    try:
                        ended = await self._execute(argv, stdin, None, (status, result))
                        out_of_memory = tree is not None and tree.oom_killed()
                    finally:
                        if tree is not None:
                            tree.remove()
                    _require_setup(status.text(), ended)
                    outcome = _outcome(ended, result.data == nonce)
                    if out_of_memory and not outcome.passed:
                        outcome = replace(outcome, status="memory")
                    return outcome
                with tempfile.TemporaryDirectory(prefix="openparity-unsandboxed-") as workdir:
                    Path(workdir, "main.py").write_text(program, encoding="utf-8")
                    with _Pipe() as secret:
                        os.write(secret.write, nonce)
                        secret.close_write()
                        argv = [self._python, "-I", "-B", str(RUNNER), str(secret.read),
                                str(result.write)]  # fmt: skip
                        ended = await self._execute(
                            argv, b"", workdir, (result, secret), limits_in_child=True
                        )
                    return _outcome(ended, result.data == nonce)

    async def _execute(
        self,
        argv: list[str],
        stdin: bytes,
        cwd: str | None,
        pipes: tuple[_Pipe, ...],
        *,
        limits_in_child: bool = False,
    ) -> _Ended:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        started = time.monotonic()
        passed_fds = tuple(p.write if p.write is not None else p.read for p in pipes)
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
            pass_fds=passed_fds,
            preexec_fn=self._child_limits if limits_in_child else None,
        )
        for pipe in pipes:  # the child holds the write ends now: ours would hide its EOF
            pipe.close_write()
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
        for pipe in pipes:
            pipe.drain()
        return _Ended(process.returncode, stdout, stderr, timed_out, time.monotonic() - started)

    def _child_limits(self) -> None:  # only for the explicit unisolated mode
        import resource

        mb = 1024 * 1024
        resource.setrlimit(resource.RLIMIT_CPU, (self.limits.cpu_s, self.limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (self.limits.memory_mb * mb,) * 2)
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.limits.file_mb * mb,) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@dataclass(frozen=True)
class _Ended:
    code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    wall_s: float


def _require_setup(status: str, ended: _Ended) -> None:
    """Raise when the launcher reported (on its own pipe, which the program never holds) that
    it could not isolate the program, or ended without reporting at all."""
    failure = next((line for line in status.splitlines() if line.startswith("sandbox:")), None)
    if failure is None and "ready" in status.splitlines():
        return
    if failure is None and ended.timed_out:
        failure = "sandbox: setup did not finish in time"
    raise SandboxUnavailableError(
        f"the sandbox could not isolate the program ({failure or 'no setup report'})",
        hint="run where namespaces are allowed (root or unprivileged user namespaces),"
        " or pass --unsafe-no-sandbox to run model code unisolated at your own risk",
    )


def _outcome(ended: _Ended, completed: bool) -> SandboxOutcome:
    status = _status(ended.code, ended.stderr, ended.timed_out)
    if status == "passed" and not completed:
        status = "failed"  # exit status 0 without the runner's nonce: it stopped early
    return SandboxOutcome(
        status, ended.code, ended.stdout, ended.stderr, ended.wall_s, completed=completed
    )


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


class _Pipe:
    """A pipe whose read end we keep; `data` is what arrived (at most 4 KiB)."""

    def __init__(self) -> None:
        self.read, w = os.pipe()
        self.write: int | None = w
        os.set_blocking(self.read, False)
        self.data = b""

    def close_write(self) -> None:
        if self.write is not None:
            os.close(self.write)
            self.write = None

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while len(self.data) < 4096 and (chunk := os.read(self.read, 4096)):
                self.data += chunk

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")

    def __enter__(self) -> _Pipe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close_write()
        os.close(self.read)


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
