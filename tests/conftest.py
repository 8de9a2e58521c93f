"""Shared fixtures: a real llama.cpp server and a scripted fault-injection stub, on loopback."""

from __future__ import annotations

import pytest

from openparity.models.local_server import LocalServer, start_local_server
from openparity.testing.stub_server import StubServer


@pytest.fixture(scope="session")
def llama_server() -> LocalServer:
    """The embedded SmolLM2 served by llama-cpp-python's real OpenAI-compatible server."""
    with start_local_server("local:smollm2-135m") as server:
        yield server


@pytest.fixture
def stub() -> StubServer:
    """A zero-latency OpenAI-compatible stub whose next answers can be scripted."""
    with StubServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch, tmp_path):
    """Tests never read the developer's models.yaml or API keys."""
    monkeypatch.delenv("OPENPARITY_MODELS", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
