"""Hostile programs in the sandbox: each ends with a clear verdict and the host is unchanged."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from openparity.bench.sandbox import Limits, Sandbox

FAST = Limits(cpu_s=2, wall_s=6, memory_mb=256, file_mb=4, processes=32)


@pytest.fixture(scope="module")
def sandbox():
    return Sandbox(FAST)


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


async def test_cannot_delete_or_write_outside_its_dir(sandbox, canary):
    verdict = await sandbox.run(f"import shutil, os\nshutil.rmtree({str(canary)!r})\n")
    assert verdict.status == "failed" and "Read-only file system" in verdict.stderr
    assert (canary / "keep.txt").read_text() == "still here"
    verdict = await sandbox.run(f"open({str(canary / 'new.txt')!r}, 'w').write('x')")
    assert verdict.status == "failed" and not (canary / "new.txt").exists()


async def test_infinite_loop_is_stopped(sandbox):
    started = time.monotonic()
    verdict = await sandbox.run("while True:\n    pass")
    assert verdict.status == "timeout"
    assert time.monotonic() - started < FAST.wall_s + 2


async def test_sleeping_forever_hits_the_wall_clock(sandbox):
    verdict = await Sandbox(Limits(cpu_s=5, wall_s=1)).run("import time\ntime.sleep(60)")
    assert verdict.status == "timeout" and verdict.wall_s < 3


async def test_memory_hog(sandbox):
    verdict = await sandbox.run("x = bytearray(2 * 1024**3)\nprint('allocated')")
    assert verdict.status == "memory" and "allocated" not in verdict.stdout


async def test_fork_bomb_is_contained(sandbox):
    verdict = await sandbox.run("import os\nwhile True:\n    os.fork()")
    assert verdict.status in {"failed", "timeout", "killed"} and not verdict.passed
    time.sleep(0.2)
    # the PID namespace died with its init: no forked process survives on the host
    survivors = [
        p
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _cmdline(p).endswith("-I -B main.py")
    ]
    assert survivors == []


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


async def test_huge_file_is_refused(sandbox):
    verdict = await sandbox.run("open('big', 'wb').write(b'x' * (64 * 1024 * 1024))")
    assert verdict.status == "output_limit"


async def test_huge_output_is_truncated_not_buffered(sandbox):
    verdict = await Sandbox(FAST).run("import sys\nsys.stdout.write('y' * 5_000_000)")
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
        assert verdict.stdout.strip().splitlines()[-1] == "65534"  # nobody


async def test_runs_in_parallel(sandbox):
    import asyncio

    verdicts = await asyncio.gather(*(sandbox.run(f"print({i})") for i in range(6)))
    assert [v.stdout.strip() for v in verdicts] == [str(i) for i in range(6)]


SYSTEM_PYTHON = Path("/usr/bin/python3.11")


@pytest.mark.skipif(
    os.geteuid() != 0 or not SYSTEM_PYTHON.exists() or shutil.which("setpriv") is None,
    reason="needs root (to become an unprivileged user) and Debian's python3.11",
)
def test_unprivileged_users_get_user_namespaces_or_a_clear_refusal():
    """Not root: the sandbox uses a user namespace, or refuses in one line; never runs bare."""
    src = Path(__file__).parents[2] / "src"
    code = (
        "import asyncio\n"
        "from openparity.bench.sandbox import Sandbox\n"
        "from openparity.errors import OpenparityError\n"
        "probe = 'import os, socket\\nprint(sorted(os.environ))\\n"
        'socket.create_connection(("127.0.0.1", 9), timeout=1)\'\n'
        "try:\n"
        "    v = asyncio.run(Sandbox().run(probe))\n"
        "    print('RAN', v.status, v.stdout.strip(), v.stderr.strip().splitlines()[-1])\n"
        "except OpenparityError as e:\n"
        "    print('REFUSED', e.one_line())\n"
    )
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "env",
            "-i",
            "HOME=/tmp",
            "OPENAI_API_KEY=sk-secret",
            f"PYTHONPATH={src}",
            str(SYSTEM_PYTHON),
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = result.stdout.strip()
    assert out.startswith(("RAN failed", "REFUSED the sandbox could not isolate")), result.stderr
    if out.startswith("RAN"):
        assert "OPENAI_API_KEY" not in out and "Network is unreachable" in out
