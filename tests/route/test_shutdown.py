"""SIGTERM with streams in flight, on a real `openparity serve`: a stream that ends within the
drain is delivered whole; one still running at the drain's end gets an SSE error event saying
the gateway is shutting down (not a bare connection error), and its ledger row says so."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import threading
import time
import urllib.request

import openai
import pytest
import yaml

from openparity.models.local_server import free_port
from tests.cli import CLI, openparity

WORDS = " ".join(f"w{i}" for i in range(40))


def read_stream(base_url: str, key: str, into: dict, name: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)
    text = ""
    try:
        for chunk in client.chat.completions.create(
            model="openparity-hybrid", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            text += "".join(c.delta.content or "" for c in chunk.choices)
        into[name] = (text, None)
    except openai.APIError as exc:
        into[name] = (text, str(exc))


@pytest.mark.slow
def test_sigterm_drains_short_streams_and_cuts_long_ones_with_an_error_event(tmp_path):
    from openparity.testing.stub_server import StubServer

    with StubServer(text=WORDS) as stub:
        port = free_port()
        config = {
            "port": port,
            "drain_s": 1.5,
            "ledger": {"path": str(tmp_path / "ledger.sqlite")},
            "tiers": [
                {
                    "model": f"openai:m@{stub.base_url}",
                    "checks": ["non_empty"],
                    "precommit_tokens": 1,
                }
            ],
        }
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        key = openparity("route", "keys", "add", "k", "-c", str(path)).stdout.strip()
        log = (tmp_path / "gateway.log").open("wb")
        process = subprocess.Popen([*CLI, "serve", "-c", str(path)], stdout=log, stderr=log)
        base_url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base_url.removesuffix("/v1") + "/health", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
        stub.script({"event_delay_s": 0.02}, {"event_delay_s": 0.2})  # about 1 s and 8 s long
        results: dict = {}
        readers = [
            threading.Thread(target=read_stream, args=(base_url, key, results, name))
            for name in ("short", "long")
        ]
        for reader in readers:
            reader.start()
            time.sleep(0.2)
        process.terminate()
        for reader in readers:
            reader.join(30)
        assert process.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
        log.close()
    assert results["short"] == (WORDS, None)
    text, error = results["long"]
    assert text and text != WORDS and error is not None and "shutting down" in error
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    rows = db.execute("SELECT status, error FROM requests ORDER BY created").fetchall()
    db.close()
    assert rows == [(200, None), (503, "cut by shutdown")]
