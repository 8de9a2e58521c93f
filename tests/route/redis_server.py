"""A real redis-server (Debian's package) on a free loopback port, for the replica tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import redis

from openparity.models.local_server import free_port


@contextmanager
def running_redis(directory: Path):
    """Yields (the redis:// URL, the process) of a fresh, unpersisted server; stops it on exit."""
    binary = shutil.which("redis-server")
    assert binary, (
        "redis-server is not installed (apt-get install redis-server; scripts/test.sh does)"
    )
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                assert process.poll() is None, "redis-server exited at start"
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)
