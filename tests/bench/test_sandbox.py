"""Hostile programs in the sandbox: each ends with a clear verdict and the host is unchanged."""

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from openparity.bench.cgroups import tree_limits
from openparity.bench.sandbox import Limits, Sandbox

FAST = Limits(cpu_s=2, wall_s=6, memory_mb=256, file_mb=4, processes=32)


@pytest.fixture(scope="module")
def sandbox(make_sandbox):
    return make_sandbox(FAST)


HIDDEN = ("/tmp", "/var/tmp", "/dev/shm", "/root", "/home", str(Path.home()))


@pytest.fixture
def canary():
    """A world-writable directory outside every hidden path: only a read-only mount saves it.

    Next to this file when the checkout is visible to the sandbox, else in /var/lib (a clone
    under /tmp is hidden by the sandbox's private /tmp, which would make the test vacuous)."""
    places = [Path(__file__).parent, Path("/var/lib"), Path("/srv")]
    base = next(
        p for p in places if not str(p.resolve()).startswith(HIDDEN) and os.access(p, os.W_OK)
    )
    path = base / f".openparity-canary-{os.getpid()}"
    path.mkdir(mode=0o777, exist_ok=True)
    os.chmod(path, 0o777)
    (path / "keep.txt").write_text("still here")
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


async def test_plain_program_passes_and_fails(sandbox):
    ok = await sandbox.run("print('héllo 世界')")
    assert ok.passed and ok.stdout.strip() == "héllo 世界"
    bad = await sandbox.run("assert 1 + 1 == 3, 'math'")
    assert bad.status == "failed" and "AssertionError: math" in bad.reason()


async def test_no_network_even_to_loopback(sandbox):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    verdict = await sandbox.run(
        "import socket\n"
        f"s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('in')"
    )
    listener.setblocking(False)
    with pytest.raises(BlockingIOError):  # nobody connected
        listener.accept()
    listener.close()
    assert verdict.status == "failed" and "in" not in verdict.stdout


async def test_environment_and_home_secrets_are_invisible(sandbox, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-super-secret")
    home_secret = Path.home() / ".openparity-test-secret"
    home_secret.write_text("hunter2")
    try:
        verdict = await sandbox.run(
            "import os, pathlib\n"
            "print(dict(os.environ))\n"
            f"print(pathlib.Path({str(home_secret)!r}).exists())\n"
            "print(os.path.exists(os.path.expanduser('~/.ssh')))\n"
        )
    finally:
        home_secret.unlink()
    assert verdict.passed
    assert "sk-super-secret" not in verdict.stdout and "hunter2" not in verdict.stdout
    assert verdict.stdout.splitlines()[1:] == ["False", "False"]


async def test_the_host_filesystem_is_invisible_except_system_dirs(sandbox, canary):
    verdict = await sandbox.run(
        "import os\n"
        f"print(os.path.exists({str(canary)!r}), os.path.exists('/var'), os.path.exists('/run'),"
        " os.path.exists('/home'), os.path.exists('/usr/lib'), os.listdir('/tmp'))\n"
    )
    assert verdict.passed, verdict.stderr
    assert verdict.stdout.split() == ["False", "False", "False", "False", "True", "['sandbox']"]


async def test_cannot_delete_or_write_in_a_visible_dir_nor_its_submounts(
    make_sandbox, canary, mode
):
    sub = canary / "sub"
    sub.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m,mode=777", "tmpfs", str(sub)]
        ).returncode
        == 0
    )
    try:
        sandbox = make_sandbox(FAST, expose=(str(canary),))
        verdict = await sandbox.run(f"import shutil\nshutil.rmtree({str(canary)!r})\n")
        assert verdict.status == "failed" and "Read-only file system" in verdict.stderr
        assert (canary / "keep.txt").read_text() == "still here"
        for target in (canary / "new.txt", sub / "new.txt"):
            verdict = await sandbox.run(f"open({str(target)!r}, 'w').write('x')")
            assert verdict.status == "failed" and "Read-only file system" in verdict.stderr
            assert not target.exists()
        assert mounted or mode == "nobody" or os.geteuid() != 0
    finally:
        if mounted:
            subprocess.run(["umount", str(sub)], check=True)
        sub.rmdir()


async def test_host_unix_sockets_cannot_be_reached(sandbox, canary):
    """Unix sockets cross network namespaces: a listener on the host must stay unreachable,
    on the filesystem (under /var/lib or /run) or in the abstract namespace."""
    places = [Path(p) for p in ("/var/lib", "/run") if os.access(p, os.W_OK)] or [canary]
    listeners, targets = [], []
    for place in places:
        path = place / f"openparity-test-{os.getpid()}.sock"
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(path))
        os.chmod(path, 0o777)
        listener.listen()
        listeners.append((listener, path))
        targets.append(str(path))
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(f"\0openparity-test-{os.getpid()}")
    abstract.listen()
    targets.append(f"\0openparity-test-{os.getpid()}")
    try:
        verdict = await sandbox.run(
            "import socket\n"
            f"for target in {targets!r}:\n"
            "    s = socket.socket(socket.AF_UNIX)\n"
            "    try:\n"
            "        s.connect(target)\n"
            "        print('CONNECTED', target)\n"
            "    except OSError as exc:\n"
            "        print('refused', type(exc).__name__)\n"
        )
        assert verdict.passed and "CONNECTED" not in verdict.stdout, verdict.stdout
        for listener, _ in [*listeners, (abstract, None)]:
            listener.setblocking(False)
            with pytest.raises(BlockingIOError):  # nobody connected
                listener.accept()
    finally:
        for listener, path in listeners:
            listener.close()
            path.unlink()
        abstract.close()


@pytest.mark.slow
async def test_infinite_loop_is_stopped(sandbox):
    started = time.monotonic()
    verdict = await sandbox.run("while True:\n    pass")
    assert verdict.status == "timeout"
    assert time.monotonic() - started < FAST.wall_s + 2


async def test_sleeping_forever_hits_the_wall_clock(make_sandbox):
    verdict = await make_sandbox(Limits(cpu_s=5, wall_s=1)).run("import time\ntime.sleep(60)")
    assert verdict.status == "timeout" and verdict.wall_s < 3


async def test_memory_hog(sandbox):
    verdict = await sandbox.run("x = bytearray(2 * 1024**3)\nprint('allocated')")
    assert verdict.status == "memory" and "allocated" not in verdict.stdout


@pytest.mark.slow
async def test_forked_memory_hogs_share_one_limit(sandbox, mode):
    """Six children of 150 MB each under a 256 MB limit: per-process rlimits let all of them
    through (900 MB); the cgroup holds the tree to its limit."""
    probe = tree_limits(16, 8) if mode == "root" else None
    if probe is None:
        pytest.skip("no cgroup can be made here (see openparity doctor): per-process limits only")
    probe.remove()
    verdict = await sandbox.run(
        "import os, time\n"
        "kids = []\n"
        "for _ in range(6):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        block = bytearray(150 * 1024 * 1024)\n"
        "        time.sleep(2)\n"
        "        os._exit(0)\n"
        "    kids.append(pid)\n"
        "codes = [os.waitpid(k, 0)[1] for k in kids]\n"
        "assert all(c == 0 for c in codes), codes\n"
        "print('all six held 150 MB')\n"
    )
    assert verdict.status == "memory" and "all six" not in verdict.stdout, verdict


async def test_fork_bomb_is_contained(make_sandbox):
    started = time.monotonic()
    verdict = await make_sandbox(Limits(cpu_s=2, wall_s=5, processes=32)).run(
        "import os\nwhile True:\n    os.fork()"
    )
    assert not verdict.passed and verdict.status in {"failed", "timeout", "killed", "memory"}
    assert time.monotonic() - started < 15
    # the PID namespace died with its init: no forked process survives on the host
    deadline = time.monotonic() + 5
    while _survivors() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _survivors() == []


def _survivors() -> list[Path]:
    return [
        p for p in Path("/proc").iterdir() if p.name.isdigit() and "-I -B runner.py" in _cmdline(p)
    ]


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


async def test_huge_file_is_refused(sandbox):
    verdict = await sandbox.run("open('big', 'wb').write(b'x' * (64 * 1024 * 1024))")
    assert verdict.status == "output_limit"


async def test_huge_output_is_truncated_not_buffered(sandbox):
    verdict = await sandbox.run("import sys\nsys.stdout.write('y' * 5_000_000)")
    assert verdict.passed and len(verdict.stdout) == FAST.output_bytes


async def test_python_level_escape_tricks_gain_nothing(sandbox):
    program = (
        "subs = ().__class__.__bases__[0].__subclasses__()\n"
        "popen = [c for c in subs if c.__name__ == 'Popen'][0] if any("
        "c.__name__ == 'Popen' for c in subs) else __import__('subprocess').Popen\n"
        "out = popen(['cat', '/etc/shadow'], stdout=-1, stderr=-1).communicate()\n"
        "print(out)\n"
        "import os; print(os.getuid())\n"
    )
    verdict = await sandbox.run(program)
    assert "root:" not in verdict.stdout
    if os.geteuid() == 0:
        assert verdict.stdout.strip().splitlines()[-1] == "65534"  # nobody, in both modes


async def test_runs_in_parallel(sandbox):
    import asyncio

    verdicts = await asyncio.gather(*(sandbox.run(f"print({i})") for i in range(6)))
    assert [v.stdout.strip() for v in verdicts] == [str(i) for i in range(6)]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting the test's submount needs root")
async def test_the_remount_fallback_for_old_kernels_is_read_only_too(canary):
    """Before Linux 5.12 there is no mount_setattr: each mount is remounted read-only."""
    sub = canary / "sub"
    sub.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=777", "tmpfs", str(sub)], check=True
    )
    try:
        sandbox = Sandbox(FAST, expose=(str(canary),))
        sandbox.legacy_remount = True
        for target in (canary / "new.txt", sub / "new.txt"):
            verdict = await sandbox.run(f"open({str(target)!r}, 'w').write('x')")
            assert verdict.status == "failed" and "Read-only file system" in verdict.stderr
            assert not target.exists()
        assert (await sandbox.run("import sys\nprint(sys.version)")).passed
    finally:
        subprocess.run(["umount", str(sub)], check=True)
        sub.rmdir()


# ctypes access to the calls a filter must refuse; each prints NAME=errno (0: it worked)
SYSCALL_PROBE = """
import ctypes, os, socket, threading, subprocess
libc = ctypes.CDLL(None, use_errno=True)
nr = {"x86_64": dict(keyctl=250, add_key=248, ptrace=101, unshare=272, mount=165, bpf=321,
                     perf_event_open=298, setns=308),
      "aarch64": dict(keyctl=219, add_key=217, ptrace=117, unshare=97, mount=40, bpf=280,
                      perf_event_open=241, setns=268)}[os.uname().machine]
def probe(name, *args):
    result = libc.syscall(ctypes.c_long(nr[name]), *args)
    print(name, "=", 0 if result >= 0 else ctypes.get_errno())
probe("keyctl", 0, -3, 0)             # KEYCTL_GET_KEYRING_ID of the session keyring
probe("add_key", b"user", b"carry", b"data", 5, -4)   # into the user keyring
probe("ptrace", 0, 0, 0, 0)           # PTRACE_TRACEME
probe("unshare", 0x10000000)          # a new user namespace
probe("mount", b"none", b"/tmp", b"tmpfs", 0, None)
probe("bpf", 0, None, 0)
probe("perf_event_open", None, 0, -1, -1, 0)
probe("setns", 0, 0)
for family, name in ((40, "vsock"), (16, "netlink")):
    try:
        socket.socket(family, socket.SOCK_DGRAM if family == 40 else socket.SOCK_RAW, 0).close()
        print(name, "= 0")
    except OSError as exc:
        print(name, "=", exc.errno)
box = []
thread = threading.Thread(target=box.append, args=(1,))
thread.start(); thread.join()
out = subprocess.run(["/bin/echo", "child"], capture_output=True, text=True).stdout.strip()
print("threads and children:", box == [1] and out == "child")
"""


async def test_kernel_facilities_past_the_namespaces_are_refused(sandbox):
    """Keyrings, ptrace, new namespaces, mounts, bpf, perf, vsock and netlink are refused by
    the seccomp filter; threads and child processes still work."""
    verdict = await sandbox.run(SYSCALL_PROBE)
    assert verdict.passed, verdict.stderr
    seen = dict(line.split(" = ") for line in verdict.stdout.splitlines() if " = " in line)
    assert seen and all(errno == "1" for errno in seen.values()), seen  # EPERM, every one
    assert "threads and children: True" in verdict.stdout


SHM_PROBE = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
key = {key}
found = libc.shmget(key, 0, 0)
print("found" if found >= 0 else "missing")
if {create}:
    made = libc.shmget(key, 32 << 20, 0o1666)  # IPC_CREAT | 0666
    address = libc.shmat(made, None, 0)
    ctypes.memmove(address, b"left for the next run", 21)
    print("created", made >= 0)
"""


async def test_shared_memory_neither_reaches_the_host_nor_outlives_a_run(sandbox):
    """SysV IPC lives in the run's own IPC namespace: a host segment is invisible, and 32 MiB
    one run leaves behind are gone for the next."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    key = 0x4F50_0000 + os.getpid() % 0xFFFF
    host_segment = libc.shmget(key, 4096, 0o1600)
    assert host_segment >= 0, os.strerror(ctypes.get_errno())
    try:
        first = await sandbox.run(SHM_PROBE.format(key=key, create=True))
        assert first.stdout.split() == ["missing", "created", "True"], first.stderr
        second = await sandbox.run(SHM_PROBE.format(key=key, create=False))
        assert second.stdout.split() == ["missing"], second.stderr
    finally:
        libc.shmctl(host_segment, 0, None)  # IPC_RMID


async def test_cpu_time_is_bounded_for_the_whole_tree(make_sandbox, mode):
    """Four processes spinning under cpu_s=1: the tree's CPU, not each process's, is bounded
    where a cgroup can count it."""
    if mode == "nobody" or tree_limits(64, 16) is None:
        pytest.skip("no cgroup for this user here: CPU time is bounded per process (warned)")
    program = (
        "import os, time\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        break\n"
        "end = time.process_time() + 0.9\n"
        "while time.process_time() < end:\n"
        "    pass\n"
        "print('spun', flush=True)\n"
    )
    verdict = await make_sandbox(Limits(cpu_s=1, wall_s=20, processes=16)).run(program)
    assert verdict.status == "timeout", verdict


async def test_per_process_limits_are_said_once_at_run_time(caplog):
    """Where no cgroup can be made, the user hears it when the first program runs."""
    sandbox = Sandbox(FAST)
    sandbox._cgroups_work = True
    with caplog.at_level("WARNING", logger="openparity.sandbox"):
        import openparity.bench.sandbox as module

        real = module.tree_limits
        module.tree_limits = lambda *args: None
        try:
            for _ in range(2):
                assert (await sandbox.run("print(1)")).passed
        finally:
            module.tree_limits = real
    said = [r.getMessage() for r in caplog.records if "per process" in r.getMessage()]
    assert len(said) == 1 and sandbox.tree_bounded is False
