"""Starting `openparity serve` as a real subprocess on loopback, with a key, for tests."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import yaml

from openparity.models.local_server import free_port
from tests.cli import CLI, openparity


@contextmanager
def running_gateway(directory: Path, config: dict, *, key_args: tuple[str, ...] = ()):
    """Write gateway.yaml, create a key, serve; yields (base_url, key, config path)."""
    port = free_port()
    config = {"port": port, "ledger": {"path": str(directory / "ledger.sqlite")}, **config}
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    added = openparity("route", "keys", "add", "tester", "-c", str(path), *key_args)
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    log = (directory / "gateway.log").open("wb")
    process = subprocess.Popen([*CLI, "serve", "-c", str(path)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                break
            except OSError:
                assert process.poll() is None, (directory / "gateway.log").read_text()
                assert time.monotonic() < deadline, "the gateway did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1", key, path
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
