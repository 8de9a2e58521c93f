"""The `openparity` command as a user runs it: a real subprocess."""

import functools
import json
import subprocess
import sys

import pytest

from openparity import __version__
from tests.cli import CLI, like_a_terminal, openparity

cli = functools.partial(openparity, timeout=120)  # these commands are quick


def test_version():
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"openparity {__version__}"


def test_chat_on_the_embedded_model_as_json():
    result = cli("chat", "local:smollm2-135m", "用一句话介绍巴黎。", "--max-tokens", "12", "--json")
    assert result.returncode == 0, result.stderr
    completion = json.loads(result.stdout)
    assert completion["model"] == "local:smollm2-135m" and completion["text"]
    assert 0 < completion["completion_tokens"] <= 12 and completion["cost_usd"] == 0.0


def test_chat_human_output_shows_accounting():
    result = cli("chat", "local:smollm2-135m", "Say hi.", "--max-tokens", "5")
    assert result.returncode == 0, result.stderr
    assert "local:smollm2-135m ·" in result.stdout and "out" in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["chat", "gpt-9", "hi"], "unknown model 'gpt-9'"),
        (["chat", "openai:gpt-4o", "hi"], "needs $OPENAI_API_KEY"),
        (["chat", "openai:m@http://127.0.0.1:9/v1", "hi"], "cannot reach"),
        (["chat", "--models", "absent.yaml", "x", "hi"], "models file not found"),
        (
            ["align", "export", "ckpt", "--out", "x.gguf", "--dtype", "q4"],
            "GGUF dtype 'q4': use f32, f16, q8_0",
        ),
        (
            ["align", "sft", "--data", "d.jsonl", "-o", "r", "--gguf", "--gguf-dtype", "bf16"],
            "GGUF dtype 'bf16': use f32, f16, q8_0",
        ),
    ],
)
@pytest.mark.slow
def test_errors_are_one_line_without_traceback(args, fragment):
    result = cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_usage_error_exit_code():
    result = cli("chat")
    assert result.returncode == 2 and "Missing argument" in result.stderr


@pytest.mark.slow
def test_doctor_json_finds_the_embedded_model(tmp_path):
    (tmp_path / "models.yaml").write_text(
        "models:\n  dead:\n    backend: openai\n    model: m\n    base_url: http://127.0.0.1:9/v1\n"
    )
    result = cli("doctor", "--json", "--models", str(tmp_path / "models.yaml"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["model local:smollm2-135m"]["ok"]
    assert checks["model local:smollm2-135m"]["detail"].endswith("MB)")
    assert checks["package llama-cpp-python"]["ok"]
    assert checks["federated (Flower SuperLink)"]["ok"], checks["federated (Flower SuperLink)"]
    assert not checks["backend dead"]["ok"] and "unreachable" in checks["backend dead"]["detail"]


@pytest.mark.slow
def test_doctor_fails_on_a_broken_models_file(tmp_path):
    (tmp_path / "models.yaml").write_text("models: [")
    result = cli("doctor", "--models", str(tmp_path / "models.yaml"))
    # the message sits in a table cell that wraps where the (temporary) path makes it wrap
    table_text = "".join(result.stdout.replace("│", " ").split())
    assert result.returncode == 1 and "notvalidYAML" in table_text


def test_models_list_json(tmp_path):
    result = cli("models", "list", "--json")
    rows = json.loads(result.stdout)["models"]
    assert rows[0]["name"] == "local:smollm2-135m"
    hosted = {row["name"]: row for row in rows}["openai:gpt-4o"]
    assert hosted["price_as_of"] and hosted["price_source"].startswith("https://")


def test_serve_local_serves_until_interrupted(tmp_path):
    """`models serve-local` is a real server: the openai client talks to it, Ctrl-C stops it."""
    import signal
    import time

    import openai

    from openparity.models.local_server import free_port

    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "models", "serve-local", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=like_a_terminal,
    )
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "use it as" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
        assert f"openai:smollm2-135m@http://127.0.0.1:{port}/v1" in line
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x")
        answer = client.chat.completions.create(
            model="smollm2-135m", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        assert answer.choices[0].message.content
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) in (0, 130)
    finally:
        proc.kill()


def test_serve_local_on_a_taken_port_fails_at_once(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("models", "serve-local", "--port", str(port))
    assert result.returncode == 2 and "serving" not in result.stdout
    assert f"cannot serve on 127.0.0.1:{port}" in result.stderr


def test_serve_local_sigterm_stops_the_server_process_too(tmp_path):
    import signal
    import time

    from openparity.models.local_server import free_port

    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "models", "serve-local", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while "use it as" not in proc.stdout.readline() and time.monotonic() < deadline:
            pass
        children = _children(proc.pid)
        assert children, "no llama.cpp server process"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143  # stopped by the signal, the way it should
        deadline = time.monotonic() + 15
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(c) for c in children), "the server outlived serve-local"
    finally:
        proc.kill()


def _children(pid: int) -> list[int]:
    from pathlib import Path

    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def _alive(pid: int) -> bool:
    from pathlib import Path

    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


def test_import_is_light():
    """`import openparity` must not pull heavy backends."""
    code = (
        "import sys, openparity, openparity.models;"
        "heavy = {'llama_cpp', 'openai', 'torch', 'numpy', 'fastapi'} & set(sys.modules);"
        "print(sorted(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_the_cli_starts_without_importing_heavy_capabilities():
    """`openparity --help` must not pay for torch (nor need it: it is an optional extra)."""
    code = "import sys, openparity.cli; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_reports_are_written_with_the_users_umask_and_keep_an_existing_files_mode(tmp_path):
    """Atomic writes go through mkstemp (mode 0600): the file must end up as a plain write
    would leave it, readable by the user's group when the umask says so."""
    import os
    import stat

    from openparity.atomic import write_atomic

    previous = os.umask(0o022)
    try:
        fresh = tmp_path / "gap.html"
        write_atomic(fresh, "<!doctype html>")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        os.umask(0o077)
        private = tmp_path / "card.md"
        write_atomic(private, "x")
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
        os.chmod(fresh, 0o640)
        write_atomic(fresh, "<!doctype html><p>again")  # an existing file keeps its mode
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o640
    finally:
        os.umask(previous)


def test_progress_bars_keep_counts_and_times_whole_at_80_columns(monkeypatch):
    """A long label (a task file's path and a model) gives way with an ellipsis; the counts,
    the elapsed time and the ETA are never cut to "20/…"."""
    import io

    from rich.console import Console

    from openparity import console

    screen = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None)
    monkeypatch.setattr(console, "err", screen)
    label = "/home/user/projects/tasks/ticket-routing.yaml · openai:qwen2.5-72b@http://10.0.0.5/v1"
    with console.ProgressBars() as bar:
        bar(label)(1234, 5000)
    import re

    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.file.getvalue())  # cursor codes
    shown = [line for line in text.replace("\r", "\n").splitlines() if "eta" in line][-1]
    assert "1234/5000" in shown and "…" in shown
    assert len(shown.rstrip()) <= 80
