"""Shared fixtures: a real llama.cpp server and a scripted fault-injection stub, on loopback."""

from __future__ import annotations

import os
from pathlib import Path

from openparity.cpus import THREADS_ENV, cpu_threads

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist workers share the machine's cores: each worker, and every process it
    # starts (llama.cpp, torch, the forecast), takes its share of threads, because
    # llama.cpp's spinning threads slow down many times over when they outnumber the cores
    _share = str(max(1, cpu_threads() // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
    for _name in (THREADS_ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, _share)

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


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised Llama with SmolLM2's real tokenizer, saved as a checkpoint:
    training mechanics and the hf: backend are tested on it in seconds."""
    import torch
    import transformers

    from openparity.models.embedded import EMBEDDED_MODELS

    gguf = EMBEDDED_MODELS["smollm2-135m"].path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist the slow tests go out first, so that no worker starts a long test
    while the other one runs out of work (longest first keeps the two workers' ends close)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)
