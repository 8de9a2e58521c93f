"""Processes and load for the gateway benchmarks: a stub upstream, `openparity serve`, the
LiteLLM proxy, and an aiohttp load generator that records every response's latency and kind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml

from openparity.models.endpoint import http_ok
from openparity.models.local_server import free_port

PY = sys.executable
OPENPARITY = [PY, "-m", "openparity.cli"]


def wait_until_up(url: str, process: subprocess.Popen, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not http_ok(url):
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start")
        time.sleep(0.2)


def start_stub(fault_rate: float = 0.0, seed: int = 0) -> tuple[str, subprocess.Popen]:
    port = free_port()
    process = subprocess.Popen(
        [
            PY,
            "-m",
            "openparity.testing.stub_server",
            "--port",
            str(port),
            "--fault-rate",
            str(fault_rate),
            "--seed",
            str(seed),
        ]
    )
    base = f"http://127.0.0.1:{port}/v1"
    wait_until_up(base + "/models", process, "the stub")
    return base, process


def start_gateway(
    directory: Path,
    config: dict,
    *,
    workers: int = 1,
    key_args: tuple[str, ...] = (),
    name: str = "gateway",
) -> tuple[str, str, subprocess.Popen]:
    """`openparity serve` (with `workers` processes) with a fresh ledger, unless the config
    names one, and one key; returns (base_url, key, process)."""
    port = free_port()
    ledger = {"path": str(directory / f"{name}.sqlite")}
    config = {"port": port, "ledger": ledger, **config}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    key = subprocess.run(
        [*OPENPARITY, "route", "keys", "add", f"bench-{port}", "-c", str(path), *key_args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    process = subprocess.Popen([*OPENPARITY, "serve", "-c", str(path), "--workers", str(workers)])
    wait_until_up(f"http://127.0.0.1:{port}/health", process, "the gateway")
    return f"http://127.0.0.1:{port}/v1", key, process


LITELLM_KEY = "sk-openparity-bench-0123456789abcdef0123456789abcdef"


def start_litellm(
    directory: Path, upstream: str, litellm: str, *, workers: int = 1, redis_url: str | None = None
) -> tuple[str, subprocess.Popen]:
    """LiteLLM's proxy (`workers` processes, master-key auth; its router's shared state in
    Redis when `redis_url` is given) in front of the same upstream."""
    port = free_port()
    config: dict = {
        "model_list": [
            {
                "model_name": "bench",
                "litellm_params": {"model": "openai/stub", "api_base": upstream, "api_key": "x"},
            }
        ],
        "litellm_settings": {"drop_params": True, "set_verbose": False},
    }
    if redis_url:
        host, redis_port = redis_url.removeprefix("redis://").split("/")[0].split(":")
        config["router_settings"] = {"redis_host": host, "redis_port": int(redis_port)}
    path = directory / f"litellm-{port}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {
        **os.environ,
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",
        "LITELLM_MASTER_KEY": LITELLM_KEY,
    }
    process = subprocess.Popen(
        [litellm, "--config", str(path), "--port", str(port), "--num_workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until_up(f"http://127.0.0.1:{port}/health/liveliness", process, "litellm", 300)
    return f"http://127.0.0.1:{port}/v1", process


@dataclass
class Outcome:
    latency_s: float
    status: int
    kind: str  # answer | error (well-formed OpenAI error) | bad (anything else)


async def load(
    base_url: str,
    key: str | None,
    model: str,
    *,
    requests: int,
    concurrency: int,
    stream_every: int = 0,
) -> tuple[float, list[Outcome]]:
    """Send `requests` chat requests, `concurrency` at a time (every `stream_every`-th one
    streamed); returns (wall seconds, outcomes)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    connector = aiohttp.TCPConnector(limit=concurrency)
    outcomes: list[Outcome] = []
    todo = iter(range(requests))

    async def worker(session: aiohttp.ClientSession) -> None:
        for index in todo:
            stream = bool(stream_every) and index % stream_every == 0
            body = {
                "model": model,
                "max_tokens": 16,
                "stream": stream,
                "messages": [{"role": "user", "content": "What is 2 + 2?"}],
            }
            started = time.perf_counter()
            async with session.post(base_url + "/chat/completions", json=body) as response:
                raw = await response.read()
                outcomes.append(
                    Outcome(
                        time.perf_counter() - started,
                        response.status,
                        classify(response.status, raw, stream),
                    )
                )

    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return time.perf_counter() - started, outcomes


def classify(status: int, raw: bytes, stream: bool) -> str:
    try:
        if status == 200 and stream:
            events = [line[5:].strip() for line in raw.split(b"\n") if line.startswith(b"data:")]
            if events and events[-1] == b"[DONE]":
                return "answer"
            return "error" if events and "error" in json.loads(events[-1]) else "bad"
        body = json.loads(raw)
        if status == 200:
            return "answer" if body["choices"][0]["message"]["content"] else "bad"
        return "error" if body["error"]["message"] else "bad"
    except (ValueError, KeyError, IndexError, TypeError):
        return "bad"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def open_sockets(pid: int) -> int:
    """Sockets open in the process and its children (the workers of `serve --workers N`)."""
    count = 0
    for member in [pid, *children(pid)]:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{member}/fd").iterdir():
                with contextlib.suppress(OSError):
                    count += os.readlink(fd).startswith("socket:")
    return count


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found + [grandchild for child in found for grandchild in children(child)]
