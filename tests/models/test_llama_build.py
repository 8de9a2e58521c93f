"""The llama.cpp build runs on this CPU: portable build flags, the subprocess probe, and the
one-line refusal when a build is known to crash (instead of a segfault)."""

from __future__ import annotations

import json
import os
import signal
import sys

import pytest

from openparity.models import llama_probe
from openparity.models.embedded import EMBEDDED_MODELS
from openparity.models.errors import LlamaBuildCrashError
from openparity.models.llama_build import portable_cmake_args, rebuild_command
from tests.cli import openparity

MODEL = EMBEDDED_MODELS["smollm2-135m"].path()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private probe record, for this test and the commands it starts."""
    monkeypatch.setenv("OPENPARITY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENPARITY_SKIP_LLAMA_PROBE", raising=False)
    return tmp_path / "cache" / "llama-probe.json"


def crash_with(monkeypatch, sig: signal.Signals) -> None:
    """Fault injection: the probe process dies by `sig`, as a build for another CPU does."""
    code = f"import os, signal; os.kill(os.getpid(), signal.{sig.name})"
    monkeypatch.setattr(llama_probe, "probe_command", lambda _: [sys.executable, "-c", code])


def test_build_flags_are_portable_and_the_rebuild_bypasses_the_wheel_cache():
    x86 = portable_cmake_args("x86_64")
    assert "-DGGML_NATIVE=OFF" in x86 and "-DGGML_AVX2=ON" in x86 and "AMX" not in x86
    assert "AVX512" not in x86  # AVX2 is the x86-64 baseline: any CPU since 2013 runs it
    arm = portable_cmake_args("aarch64")
    assert "-DGGML_NATIVE=OFF" in arm and "AVX" not in arm
    command = rebuild_command("x86_64")
    assert "--no-cache-dir" in command and "--no-binary llama-cpp-python" in command
    assert "--force-reinstall" in command and "-DGGML_NATIVE=OFF" in command


def test_the_installed_build_was_compiled_for_the_portable_baseline():
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    enabled = {p.split("=")[0].strip() for p in info.split("|") if p.strip().endswith("= 1")}
    if os.uname().machine == "x86_64":
        assert "AVX2" in enabled, info
        assert not {"AMX_INT8", "AVX512", "AVX512_VNNI", "AVX512_BF16"} & enabled, info


def test_probe_decodes_a_multi_token_prompt_in_a_subprocess_and_records_it(cache):
    result = llama_probe.run_probe(MODEL)
    assert result.ok and not result.crashed, result.detail
    prompt_tokens, generated = (int(w) for w in result.detail.split() if w.isdigit())
    assert prompt_tokens > 1 and generated > 1  # a one-token decode would miss the crash
    assert llama_probe.recorded(llama_probe.build_id()) == result
    assert json.loads(cache.read_text())[result.build]["ok"] is True


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGILL])
def test_a_crashing_build_is_recorded_and_refused_with_the_rebuild_line(cache, monkeypatch, sig):
    crash_with(monkeypatch, sig)
    result = llama_probe.run_probe(MODEL)
    assert result.crashed and not result.ok and sig.name in result.detail
    with pytest.raises(LlamaBuildCrashError, match="rebuild it portably"):
        llama_probe.ensure_build_runs(MODEL)  # from the record: no new probe needed
    monkeypatch.undo()
    # real commands on this build now fail with one line instead of loading llama.cpp
    gateway = cache.parent / "gateway.yaml"
    gateway.write_text(
        "tiers:\n  - model: local:smollm2-135m\nauth: {required: false}\n"
        f"ledger: {{path: {cache.parent / 'ledger.sqlite'}}}\n",
        encoding="utf-8",
    )
    os.environ["OPENPARITY_CACHE_DIR"] = str(cache.parent)
    try:
        chat = openparity("chat", "local:smollm2-135m", "Name three colours.", timeout=60)
        serve = openparity("serve", "-c", str(gateway), "--port", "1", timeout=60)
    finally:
        del os.environ["OPENPARITY_CACHE_DIR"]
    for result in (chat, serve):
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "crashed in a test decode" in lines[0]
        assert "CMAKE_ARGS=" in lines[0] and "--no-cache-dir" in lines[0]


def test_a_probe_that_fails_without_crashing_is_not_blamed_on_the_build(cache, monkeypatch):
    monkeypatch.setattr(
        llama_probe, "probe_command", lambda _: [sys.executable, "-c", "raise SystemExit('bad')"]
    )
    result = llama_probe.run_probe(MODEL)
    assert not result.ok and not result.crashed and result.detail == "bad"
    assert not cache.exists()  # not recorded: the next use probes again
    llama_probe.ensure_build_runs(MODEL)  # and loading is left to report its own error


def test_the_first_use_of_a_build_probes_it_once(cache):
    first = openparity("chat", "local:smollm2-135m", "Say hi.", "--max-tokens", "4", timeout=120)
    assert first.returncode == 0, first.stderr
    records = json.loads(cache.read_text())
    assert [r["ok"] for r in records.values()] == [True]


def test_doctor_proves_the_backend_by_using_it_and_fails_on_a_crashing_build(cache, monkeypatch):
    from openparity.doctor import _llama_build_check

    check = _llama_build_check()
    assert check.ok and "generated" in check.detail and "built for:" in check.detail
    crash_with(monkeypatch, signal.SIGSEGV)
    check = _llama_build_check()
    assert not check.ok and check.required
    assert "SIGSEGV" in check.detail and "--no-binary llama-cpp-python" in check.detail
