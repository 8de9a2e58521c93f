"""Serve a local GGUF as a real OpenAI-compatible HTTP server (llama-cpp-python's server).

Used by `openparity models serve-local`, and by tests and benchmarks that need a real server
on loopback behind the `openai` backend.
"""

from __future__ import annotations

import importlib.util
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from openparity.cpus import cpu_threads
from openparity.models.endpoint import http_ok, require_free_port
from openparity.models.errors import BackendUnavailableError, MissingDependencyError
from openparity.models.local_backend import gguf_path
from openparity.models.spec import ModelSpec, parse_spec


@dataclass
class LocalServer:
    """A running llama.cpp server process. Use as a context manager to stop it on exit."""

    process: subprocess.Popen[bytes]
    base_url: str
    model: str
    log_path: Path

    @property
    def spec(self) -> str:
        """The openparity model spec that talks to this server."""
        return f"openai:{self.model}@{self.base_url}"

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def local_server_command(
    spec: ModelSpec, *, host: str, port: int, n_ctx: int | None = None, logits_all: bool = False
) -> list[str]:
    """The argv that starts llama-cpp-python's OpenAI-compatible server for `spec`."""
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf_path(spec)),
        "--model_alias",
        served_name(spec),
        "--host",
        host,
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx or spec.n_ctx),
        "--n_threads",
        str(cpu_threads()),
    ]
    if logits_all:
        command += ["--logits_all", "true"]
    return command


def served_name(spec: ModelSpec) -> str:
    """The model name the server answers to: the embedded alias or the file's stem."""
    return Path(spec.model).stem if spec.model.endswith(".gguf") else spec.model


def start_local_server(
    model: str | ModelSpec = "local:smollm2-135m",
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    n_ctx: int | None = None,
    logits_all: bool = False,
    ready_timeout_s: float = 120.0,
) -> LocalServer:
    """Start the server and wait until it answers GET /v1/models."""
    spec = parse_spec(model) if isinstance(model, str) else model
    if spec.backend != "local":
        raise BackendUnavailableError(f"serve-local serves local models, not {spec.name}")
    if importlib.util.find_spec("llama_cpp.server") is None or not _server_deps_present():
        raise MissingDependencyError(
            "serving needs llama-cpp-python's server extra", hint='pip install "openparity[serve]"'
        )
    port = port or free_port(host)
    require_free_port(host, port)
    from openparity.models.llama_probe import ensure_build_runs

    ensure_build_runs(gguf_path(spec))
    base_url = f"http://{host}:{port}/v1"
    command = local_server_command(spec, host=host, port=port, n_ctx=n_ctx, logits_all=logits_all)
    with tempfile.NamedTemporaryFile(
        prefix="openparity-serve-", suffix=".log", delete=False
    ) as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
    server = LocalServer(process, base_url, served_name(spec), Path(log.name))
    try:
        _wait_ready(server, ready_timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when its parent dies (even by
    kill -9), so a server never outlives the command that started it."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _server_deps_present() -> bool:
    return all(importlib.util.find_spec(m) for m in ("fastapi", "uvicorn", "sse_starlette"))


def _wait_ready(server: LocalServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = server.log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise BackendUnavailableError(
                f"the llama.cpp server exited with code {server.process.returncode}: "
                + " | ".join(tail),
                hint=f"full log: {server.log_path}",
            )
        if http_ok(f"{server.base_url}/models", timeout_s=1.0):
            return
        time.sleep(0.1)
    raise BackendUnavailableError(
        f"the llama.cpp server did not become ready within {timeout_s:g}s",
        hint=f"see its log: {server.log_path}",
    )
