"""A real PostgreSQL server (Debian's package) in a fresh data directory on a free loopback
port, for the ledger tests. As root it runs as the user nobody (postgres refuses root)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager

import psycopg

from openparity.models.local_server import free_port


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None
    )
    assert found, f"{name} is not installed (apt-get install postgresql; scripts/test.sh does)"
    return found


def _as_server_user() -> list[str]:
    if os.getuid() != 0:
        return []
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


class PostgresServer:
    def __init__(self, data: str, port: int) -> None:
        self.data, self.port = data, port
        self.url = f"postgresql://openparity@127.0.0.1:{port}/postgres"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*_as_server_user(), _binary("postgres"), "-D", self.data, "-p", str(self.port),
             "-k", self.data, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                assert self.process.poll() is None, "postgres exited at start"
                assert time.monotonic() < deadline, "postgres did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: clients are disconnected
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def count(self, table: str) -> int:
        with psycopg.connect(self.url) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


@contextmanager
def running_postgres():
    """Yields a started PostgresServer (trust auth, user openparity); removes it on exit."""
    data = tempfile.mkdtemp(prefix="openparity-pg-")
    if os.getuid() == 0:
        user = pwd.getpwnam("nobody")
        os.chown(data, user.pw_uid, user.pw_gid)
    subprocess.run(
        [*_as_server_user(), _binary("initdb"), "-D", data, "-U", "openparity", "--auth=trust",
         "-E", "UTF8", "--no-instructions"],
        check=True, capture_output=True,
    )  # fmt: skip
    server = PostgresServer(data, free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
