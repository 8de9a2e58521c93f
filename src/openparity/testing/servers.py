"""Real database servers from the system packages, on free loopback ports, for tests and
benchmarks: redis-server (the gateway's shared state) and PostgreSQL (its ledger and keys).
As root, postgres runs as the user nobody (it refuses to run as root).

    with running_redis(tmp) as (url, process): ...
    with running_postgres() as server: ... server.url ... server.stop(); server.start()
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from openparity.models.local_server import free_port


class ServerStartError(RuntimeError):
    """A database server is not installed or did not start."""


@contextmanager
def running_redis(directory: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Yields (the redis:// URL, the process) of a fresh, unpersisted server; stops it on exit."""
    import redis

    binary = _binary("redis-server", "redis-server")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait(lambda: redis.Redis.from_url(url).ping(), redis.ConnectionError, process, "redis")
        yield url, process
    finally:
        _stop(process, signal.SIGTERM)


class PostgresServer:
    """A postgres on `data` and `port`, trust auth for the user openparity; stop() and start()
    again keep its data (a database that goes away and comes back)."""

    def __init__(self, data: str, port: int) -> None:
        self.data, self.port = data, port
        self.url = f"postgresql://openparity@127.0.0.1:{port}/postgres"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import psycopg

        self.process = subprocess.Popen(
            [
                *_as_server_user(),
                _binary("postgres", "postgresql"),
                "-D",
                self.data,
                "-p",
                str(self.port),
                "-k",
                self.data,
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probe = lambda: psycopg.connect(self.url, connect_timeout=2).close()  # noqa: E731
        _wait(probe, psycopg.OperationalError, self.process, "postgres")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process, signal.SIGINT)  # fast shutdown: clients are disconnected

    def count(self, table: str) -> int:
        import psycopg

        with psycopg.connect(self.url) as conn:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Yields a started PostgresServer in a fresh data directory; removes both on exit."""
    data = tempfile.mkdtemp(prefix="openparity-pg-")
    if os.getuid() == 0:
        user = pwd.getpwnam("nobody")
        os.chown(data, user.pw_uid, user.pw_gid)
    made = subprocess.run(
        [
            *_as_server_user(),
            _binary("initdb", "postgresql"),
            "-D",
            data,
            "-U",
            "openparity",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-instructions",
        ],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        raise ServerStartError(f"initdb failed: {made.stderr.strip()[:300]}")
    server = PostgresServer(data, free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def frozen(pid: int) -> Iterator[None]:
    """A server and every process under it stopped (SIGSTOP) until the block ends: a
    database that hangs without closing its connections."""
    pids = [pid, *_descendants(pid)]
    for each in pids:
        os.kill(each, signal.SIGSTOP)
    try:
        yield
    finally:
        for each in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(each, signal.SIGCONT)


def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    found, frontier = [], [pid]
    while frontier:
        children = parents.get(frontier.pop(), [])
        found += children
        frontier += children
    return found


def _binary(name: str, package: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None
    )
    if not found:
        raise ServerStartError(
            f"{name} is not installed: apt-get install {package} (scripts/test.sh does)"
        )
    return found


def _as_server_user() -> list[str]:
    if os.getuid() != 0:
        return []
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


def _wait(probe, refused: type[BaseException], process: subprocess.Popen[bytes], what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while True:
        try:
            probe()
            return
        except refused:
            if process.poll() is not None:
                raise ServerStartError(f"{what} exited at start ({process.returncode})") from None
            if time.monotonic() > deadline:
                raise ServerStartError(f"{what} did not start within 30 s") from None
            time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes], sig: int) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
