"""Starting `openparity serve` as a real subprocess on loopback, with a key, for tests."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
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
    with serving(path, port) as base_url:
        yield base_url, added.stdout.strip(), path


@contextmanager
def serving(
    path: Path, port: int, *serve_args: str, log_name: str = "gateway.log", cwd: Path | None = None
):
    """`openparity serve -c PATH --port PORT ...` (in `cwd`) until its /health answers; yields
    its base URL and stops it (SIGTERM) on exit."""
    log_path = path.parent / log_name
    log = log_path.open("wb")
    command = [*CLI, "serve", "-c", str(path), "--port", str(port), *serve_args]
    process = subprocess.Popen(command, stdout=log, stderr=log, cwd=cwd)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                break
            except OSError:
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the gateway did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def post_body(
    base_url: str, key: str, raw: bytes, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """POST `raw` to /chat/completions on a fresh connection: (HTTP status, body)."""
    request = urllib.request.Request(
        base_url + "/chat/completions",
        raw,
        {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def chat_status(base_url: str, key: str, content: str = "二加二？") -> int:
    """One short chat request on a fresh connection; its HTTP status."""
    body = json.dumps(
        {
            "model": "openparity-hybrid",
            "max_tokens": 4,
            "messages": [{"role": "user", "content": content}],
        }
    ).encode()
    return post_body(base_url, key, body)[0]


def priced_models_file(directory: Path, name: str, base_url: str, price: float) -> Path:
    """models.yaml naming one OpenAI-compatible upstream at `price` USD per million tokens
    (in and out), so that every attempt is costed."""
    path = directory / "models.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "models": {
                    name: {
                        "backend": "openai",
                        "model": "stub",
                        "base_url": base_url,
                        "price": {"input": price, "output": price},
                    }
                }
            }
        ),
        encoding="utf-8",
    )
    return path


@contextmanager
def stub_pair(open_text: str, closed_text: str):
    """Two scripted upstreams, the open and the closed side: yields (open, closed)."""
    from openparity.testing.stub_server import StubServer

    with StubServer(text=open_text) as open_, StubServer(text=closed_text) as closed:
        yield open_, closed
