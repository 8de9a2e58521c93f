"""Running the `openparity` command as a user does: a real subprocess."""

from __future__ import annotations

import signal
import subprocess
import sys

CLI = [sys.executable, "-m", "openparity.cli"]


def openparity(*args: str, timeout: float = 600, env: dict | None = None, cwd=None):
    """Run `openparity ARGS...`; returns the CompletedProcess (text stdout / stderr)."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
    )


def like_a_terminal() -> None:
    """`preexec_fn` for a child the test will Ctrl-C: SIGINT as a terminal delivers it. A
    harness started in the background (nohup, `cmd &`) passes SIGINT on as ignored, and a
    Python started that way never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
