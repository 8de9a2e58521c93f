"""Run untrusted (model-written) Python in isolation: no network, private filesystem, limits.

Each program runs in a fresh process tree set up by `sandbox_launcher.py`: its own network,
mount, PID and IPC namespaces, a new session, an empty session keyring, a seccomp filter
(`sandbox_seccomp.py`), a new root holding only the system and Python directories (read-only all
the way down) with an empty work dir on a private tmpfs, a scrubbed environment (no API keys),
the user `nobody` when started as root, rlimits on CPU, memory, file size and open files,
memory, process and CPU-time limits for the whole tree through cgroups where they can be made
(`cgroups.py`; where not, one warning says the limits are per process), and a wall-clock timeout
after which the whole tree is killed. When the kernel refuses any of that, nothing runs:
`SandboxUnavailableError`, unless the caller explicitly opts out with `isolate=False` (rlimits
and a temp dir only: for trusted code such as canonical solutions).

Code answers are judged across the wall (`Sandbox.judge`): the answer runs in the sandbox as
a callee (`sandbox_callee.py`) and the task's tests run in a trusted judge process
(`sandbox_judge.py`) that calls it and gets only plain data back (`plain_data.py`). The answer's
process holds no test, no expected value and no verdict to forge.

`Sandbox.run` runs one whole program. It passes only when it ran to its end: `sandbox_runner.py`
runs it and writes a per-run secret nonce to a pipe of its own after the program's last line
returned; exit status 0 alone (an early `sys.exit(0)`) is not a pass. Setup failures come back
on a status pipe that is closed before the program starts, so a program cannot fake one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from openparity.bench.cgroups import TreeLimits, tree_limits
from openparity.bench.errors import SandboxUnavailableError
from openparity.cpus import usable_cpus

LAUNCHER = Path(__file__).with_name("sandbox_launcher.py")
RUNNER = Path(__file__).with_name("sandbox_runner.py")
CALLEE = Path(__file__).with_name("sandbox_callee.py")
JUDGE = Path(__file__).with_name("sandbox_judge.py")
PLAIN_DATA = Path(__file__).with_name("plain_data.py")
ANSWER_GRACE_S = 2.0  # how long the answer's process may take to end once the verdict is in
CPU_POLL_S = 0.05  # how often a run's cgroup CPU time is read
PER_PROCESS_LIMITS = (
    "no cgroup can be made here, so memory, CPU time and process count are limited per"
    " process: a program that starts n processes may use n times each limit"
)
log = logging.getLogger("openparity.sandbox")
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


@dataclass(frozen=True)
class TrustedTests:
    """Tests a judge process runs against an answer in the sandbox. `prelude` and `tests` are
    the task's own code (never the model's); `proxy` names the answer's functions the tests
    call (None: every name the tests read that the prelude and the builtins leave undefined)."""

    tests: str
    prelude: str = ""
    proxy: tuple[str, ...] | None = None
    shadows: tuple[str, ...] = ()  # builtins the answer is meant to replace (MBPP's own `sum`)


@dataclass(frozen=True)
class Judgement:
    """A judge's verdict on an answer, and how the answer's own process ended. Only `passed`
    means the tests ran to their end in the judge against the answer's plain-data results."""

    status: Status
    detail: str
    calls: int
    answer: SandboxOutcome

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def reason(self) -> str:
        return self.detail if self.status == "failed" else self.status


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
        self.parallel = parallel or usable_cpus()
        # one semaphore per event loop: an asyncio primitive binds to the first loop it
        # waits on, and two reward functions may each run their own loop over one task
        self._slots_by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Semaphore
        ] = weakref.WeakKeyDictionary()
        self._python = os.path.realpath(sys.executable)  # the base interpreter, not a venv shim

    @property
    def _slots(self) -> asyncio.Semaphore:
        """At most `parallel` runs at a time on the running event loop."""
        loop = asyncio.get_running_loop()
        slots = self._slots_by_loop.get(loop)
        if slots is None:
            slots = self._slots_by_loop[loop] = asyncio.Semaphore(self.parallel)
        return slots

    def _launcher_config(
        self, status_fd: int, mode: str, program_fds: tuple[int, ...]
    ) -> dict[str, object]:
        lim = self.limits
        return {
            "mode": mode,
            "program_fds": list(program_fds),
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
            "legacy_remount": self.legacy_remount,
        }

    def _tree_limits(self) -> TreeLimits | None:
        """This run's cgroup; after the first refusal, per-process rlimits only (said once)."""
        if not self._cgroups_work:
            return None
        tree = tree_limits(self.limits.memory_mb, self.limits.processes)
        if tree is None:
            self._cgroups_work = False
            log.warning("sandbox: %s", PER_PROCESS_LIMITS)
        return tree

    @property
    def tree_bounded(self) -> bool | None:
        """Whether runs so far were bounded as a whole tree (None: nothing isolated yet)."""
        return self._cgroups_work if self.isolate else False

    def _exposed(self) -> list[str]:
        """Host paths the program sees, read-only: the system dirs and the Python install."""
        paths = [
            *SYSTEM_DIRS,
            os.path.realpath(sys.base_prefix),
            os.path.dirname(self._python),
            *self.expose,
        ]
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
                    with self._isolated(status, "program", (result.write,)) as launch:
                        stdin = nonce + b"\n" + _source(program)
                        ended = await self._execute(
                            launch.argv, stdin, None, (status, result), launch=launch
                        )
                    _require_setup(status.text(), ended)
                    outcome = _outcome(ended, result.data == nonce)
                    if launch.out_of_memory and not outcome.passed:
                        outcome = replace(outcome, status="memory")
                    if launch.over_cpu and not outcome.passed:
                        outcome = replace(outcome, status="timeout")
                    return outcome
                with tempfile.TemporaryDirectory(prefix="openparity-unsandboxed-") as workdir:
                    Path(workdir, "main.py").write_bytes(_source(program))
                    with _Pipe() as secret:
                        os.write(secret.write, nonce)
                        secret.close_write()
                        argv = [
                            self._python,
                            "-I",
                            "-B",
                            str(RUNNER),
                            str(secret.read),
                            str(result.write),
                        ]
                        ended = await self._execute(
                            argv, b"", workdir, (result, secret), limits_in_child=True
                        )
                    return _outcome(ended, result.data == nonce)

    async def judge(self, answer: str, tests: TrustedTests) -> Judgement:
        """Run `answer` in the sandbox as a callee and `tests` in a trusted judge process that
        calls it across the wall with plain data (`sandbox_judge.py`). Raises only when
        isolation is impossible or the judge itself broke."""
        async with self._slots:
            with _Pipe() as status, _Pipe() as verdict, _CallPipes() as wire:
                if self.isolate:
                    with self._isolated(status, "callee", wire.callee_fds) as launch:
                        assert status.write is not None
                        fds = (status.write, *wire.callee_fds)
                        sandboxed = await self._start(
                            launch.argv, b"\n" + _source(answer), None, fds
                        )
                        launch.watch(sandboxed)
                        status.close_write()
                        verdict_json, judged, answered = await self._judged(
                            sandboxed, tests, wire, verdict
                        )
                    status.drain()
                    _require_setup(status.text(), answered)
                    judgement = _judgement(verdict_json, judged, answered, launch.out_of_memory)
                    if launch.over_cpu and not judgement.passed:
                        judgement = replace(judgement, status="timeout")
                    return judgement
                with tempfile.TemporaryDirectory(prefix="openparity-unsandboxed-") as workdir:
                    Path(workdir, "main.py").write_bytes(_source(answer))
                    shutil.copy(PLAIN_DATA, Path(workdir, "plain_data.py"))
                    argv = [self._python, "-I", "-B", str(CALLEE), *map(str, wire.callee_fds)]
                    sandboxed = await self._start(
                        argv, b"", workdir, wire.callee_fds, limits_in_child=True
                    )
                    verdict_json, judged, answered = await self._judged(
                        sandboxed, tests, wire, verdict
                    )
                    return _judgement(verdict_json, judged, answered, False)

    async def _judged(
        self, sandboxed: _Running, tests: TrustedTests, wire: _CallPipes, verdict: _Pipe
    ) -> tuple[str, _Ended, _Ended]:
        """Start the judge beside the started callee; wait for the verdict, then the callee."""
        assert verdict.write is not None
        judge_fds = (wire.request_write, wire.reply_read, verdict.write)
        argv = [self._python, "-I", "-B", str(JUDGE), *map(str, judge_fds)]
        config = json.dumps(
            {
                "prelude": tests.prelude,
                "tests": tests.tests,
                "proxy": list(tests.proxy) if tests.proxy is not None else None,
                "shadows": list(tests.shadows),
            }
        )
        judge = await self._start(argv, _source(config), None, judge_fds, limits_in_child=True)
        wire.close()  # the two children hold every end now: a dead one gives the other EOF
        verdict.close_write()
        judged = await _finish(judge, self.limits.wall_s)
        remaining = self.limits.wall_s - (time.monotonic() - sandboxed.started)
        answered = await _finish(sandboxed, min(max(remaining, 0.0), ANSWER_GRACE_S))
        verdict.drain()
        return verdict.text(), judged, answered

    @contextlib.contextmanager
    def _isolated(
        self, status: _Pipe, mode: str, program_fds: tuple[int, ...]
    ) -> Iterator[_Launch]:
        """The launcher's command line for one isolated run, inside its cgroup (removed after)."""
        assert status.write is not None
        tree = self._tree_limits()
        config = self._launcher_config(status.write, mode, program_fds)
        config["cgroup_procs"] = tree.procs if tree else []
        # RLIMIT_NPROC counts every process of the user (nobody), other runs' too: only a
        # fallback where no pids cgroup bounds this run's tree alone
        config["nproc_rlimit"] = tree is None
        argv = [self._python, "-I", "-S", str(LAUNCHER), json.dumps(config)]
        launch = _Launch(argv, tree, self.limits.cpu_s)
        try:
            yield launch
            launch.out_of_memory = tree is not None and tree.oom_killed()
        finally:
            launch.stop()
            if tree is not None:
                tree.remove()

    async def _execute(
        self,
        argv: list[str],
        stdin: bytes,
        cwd: str | None,
        pipes: tuple[_Pipe, ...],
        *,
        limits_in_child: bool = False,
        launch: _Launch | None = None,
    ) -> _Ended:
        passed_fds = tuple(p.write if p.write is not None else p.read for p in pipes)
        running = await self._start(argv, stdin, cwd, passed_fds, limits_in_child=limits_in_child)
        if launch is not None:
            launch.watch(running)
        for pipe in pipes:  # the child holds the write ends now: ours would hide its EOF
            pipe.close_write()
        ended = await _finish(running, self.limits.wall_s)
        for pipe in pipes:
            pipe.drain()
        return ended

    async def _start(
        self,
        argv: list[str],
        stdin: bytes,
        cwd: str | None,
        passed_fds: tuple[int, ...],
        *,
        limits_in_child: bool = False,
    ) -> _Running:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
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
        readers = tuple(
            asyncio.ensure_future(_read_bounded(s, self.limits.output_bytes))
            for s in (process.stdout, process.stderr)
        )
        writer = asyncio.ensure_future(_feed(process, stdin))
        return _Running(process, readers, writer, time.monotonic())

    def _child_limits(self) -> None:  # only for the explicit unisolated mode
        import resource

        mb = 1024 * 1024
        resource.setrlimit(resource.RLIMIT_CPU, (self.limits.cpu_s, self.limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (self.limits.memory_mb * mb,) * 2)
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.limits.file_mb * mb,) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@dataclass
class _Launch:
    """One isolated run's launcher command, and what its cgroup saw."""

    argv: list[str]
    tree: TreeLimits | None = None
    cpu_s: float = 0.0
    out_of_memory: bool = False
    over_cpu: bool = False  # the whole tree used more than cpu_s: killed as a timeout
    _watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    def watch(self, running: _Running) -> None:
        """Kill the run once its whole tree has used more than `cpu_s` of CPU (RLIMIT_CPU
        bounds each process alone: four processes could use four times the limit)."""
        if self.tree is not None and self.tree.cpu_seconds() is not None:
            self._watcher = asyncio.ensure_future(self._watch(running.process.pid))

    async def _watch(self, pid: int) -> None:
        assert self.tree is not None
        while True:
            await asyncio.sleep(CPU_POLL_S)
            used = self.tree.cpu_seconds()
            if used is not None and used > self.cpu_s:
                self.over_cpu = True
                _kill_group(pid)
                return

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()


class _CallPipes:
    """The two pipes between judge and callee: requests one way, replies the other (blocking:
    each child reads its end in turn)."""

    def __init__(self) -> None:
        self.request_read, self.request_write = os.pipe()
        self.reply_read, self.reply_write = os.pipe()
        self._open = [self.request_read, self.request_write, self.reply_read, self.reply_write]

    @property
    def callee_fds(self) -> tuple[int, int]:
        return self.request_read, self.reply_write

    def close(self) -> None:
        while self._open:
            os.close(self._open.pop())

    def __enter__(self) -> _CallPipes:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _source(text: str) -> bytes:
    """Text for a child, as UTF-8; a lone surrogate (an API may send one) stays invalid bytes,
    so the program fails to compile: a model's broken output is a wrong answer, not a crash."""
    return text.encode("utf-8", errors="surrogatepass")


def _judgement(verdict_json: str, judged: _Ended, answered: _Ended, oom: bool) -> Judgement:
    answer = _outcome(answered, completed=False)
    try:
        verdict = json.loads(verdict_json)
        passed, detail = verdict["passed"] is True, str(verdict["reason"])
    except (ValueError, KeyError, TypeError):
        if judged.timed_out:
            return Judgement("timeout", "timeout", 0, answer)
        last = judged.stderr.strip().splitlines()[-1:] or [f"exit {judged.code}"]
        raise SandboxUnavailableError(
            f"the code judge ended without a verdict ({last[0][:200]})",
            hint="this is openparity's fault, not the answer's: please report it",
        ) from None
    calls = int(verdict.get("calls", 0))
    if passed:
        return Judgement("passed", detail, calls, answer)
    status: Status = "failed"
    if oom:
        status = "memory"
    elif answer.status in ("timeout", "memory", "output_limit"):
        status = answer.status
    return Judgement(status, detail, calls, answer)


@dataclass(frozen=True)
class _Running:
    process: asyncio.subprocess.Process
    readers: tuple[asyncio.Future[str], asyncio.Future[str]]
    writer: asyncio.Future[None]
    started: float


async def _feed(process: asyncio.subprocess.Process, data: bytes) -> None:
    """Write a child's whole stdin, then close it (a child that stops reading just dies)."""
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        process.stdin.write(data)
        await process.stdin.drain()
        process.stdin.close()


async def _finish(running: _Running, timeout: float) -> _Ended:
    """Wait for a started child for at most `timeout` seconds, then kill its whole group."""
    process, timed_out = running.process, False
    try:
        await asyncio.wait_for(process.wait(), max(timeout, 0.0))
    except TimeoutError:
        timed_out = process.returncode is None
    finally:
        if process.returncode is None:
            _kill_group(process.pid)
            await process.wait()
        running.writer.cancel()
    stdout, stderr = [await r for r in running.readers]
    wall = time.monotonic() - running.started
    return _Ended(process.returncode, stdout, stderr, timed_out, wall)


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
