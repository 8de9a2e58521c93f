"""Running the `openparity` command as a user does: a real subprocess."""

from __future__ import annotations

import subprocess
import sys

CLI = [sys.executable, "-m", "openparity.cli"]


def openparity(*args: str, timeout: float = 600, env: dict | None = None, cwd=None):
    """Run `openparity ARGS...`; returns the CompletedProcess (text stdout / stderr)."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
    )
