"""Flower's processes on this machine: a SuperLink (deployment or simulation), SuperNodes,
and `flwr run` submitting the openparity app to a SuperLink.

Every process gets a private FLWR_HOME under the run directory and this Python's `bin/` first
on PATH (the SuperLink and SuperNodes start Flower's own executables from there). Each runs in
its own process group, so stopping one also stops the app processes it started.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from openparity.federated.errors import FederatedError

CONNECTION = "openparity"
_RAISED = re.compile(r"(?:FederatedError|AlignError|OpenparityError)\b[^:]*: (.+)$")


@dataclass(frozen=True)
class Tls:
    """Certificates for TLS; None everywhere means --insecure (loopback and tests only)."""

    certfile: Path | None = None  # the SuperLink's certificate
    keyfile: Path | None = None  # and its key
    ca_certfile: Path | None = None  # the CA that signed it (members and `flwr run` trust it)

    @property
    def enabled(self) -> bool:
        return self.ca_certfile is not None


class FlowerProcess:
    """A Flower executable in its own process group, its output in a log file."""

    def __init__(self, name: str, command: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.name, self.log_path = name, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_detach
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM to the group, SIGKILL after `timeout`."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _detach() -> None:
    """In the child: its own process group, and on Linux death when its parent dies, so a
    kill -9 of the openparity command leaves no SuperLink or SuperNode behind."""
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def flower_env(home: Path) -> dict[str, str]:
    """The environment of a Flower process: its own FLWR_HOME, this Python's bin/ on PATH."""
    home.mkdir(parents=True, exist_ok=True)
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "FLWR_HOME": str(home),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_TELEMETRY_ENABLED": "0",
        "PYTHONUNBUFFERED": "1",
    }


def executable(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FederatedError(
            f"Flower's {name} is not installed beside {sys.executable}",
            hint='pip install "openparity[federated]"',
        )
    return str(path)


def start_superlink(
    home: Path, port: int, *, simulation: bool = False, tls: Tls = Tls(), host: str = "127.0.0.1"
) -> FlowerProcess:
    """A SuperLink serving its HTTP APIs on host:port; returns once it answers."""
    command = [
        executable("flower-superlink"),
        "--host",
        host,
        "--port",
        str(port),
        "--database",
        str(home / "superlink.db"),
        "--disable-runtime-dependency-installation",
    ]
    if simulation:
        command.append("--simulation")
    if tls.enabled:
        command += [
            "--ssl-certfile",
            str(tls.certfile),
            "--ssl-keyfile",
            str(tls.keyfile),
            "--ssl-ca-certfile",
            str(tls.ca_certfile),
        ]
    else:
        command.append("--insecure")
    link = FlowerProcess("superlink", command, home / "superlink.log", flower_env(home))
    wait_for_port(link, "127.0.0.1" if host in ("0.0.0.0", "::") else host, port)
    return link


def start_supernode(
    home: Path, superlink: str, data: Path, port: int, *, root_certificates: Path | None = None
) -> FlowerProcess:
    """A SuperNode connected to `superlink` (HOST:PORT) whose ClientApp reads `data`."""
    node_config = f"data={json.dumps(str(data.resolve()), ensure_ascii=False)}"
    command = [
        executable("flower-supernode"),
        "--superlink",
        superlink,
        "--port",
        str(port),
        "--node-config",
        node_config,
    ]
    if root_certificates is not None:
        command += ["--root-certificates", str(root_certificates)]
    else:
        command.append("--insecure")
    return FlowerProcess("supernode", command, home / "supernode.log", flower_env(home))


def write_connection(home: Path, address: str, tls: Tls = Tls()) -> None:
    """The Flower CLI's config.toml with one SuperLink connection, `openparity`."""
    home.mkdir(parents=True, exist_ok=True)
    security = (
        f"root-certificates = {json.dumps(str(tls.ca_certfile))}"
        if tls.enabled
        else "insecure = true"
    )
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "{address}"\n{security}\n',
        encoding="utf-8",
    )


def submit(
    app: Path, home: Path, *, members: int | None = None, on_line: Callable[[str], None] = print
) -> tuple[int, str | None]:
    """`flwr run APP openparity --stream`: the run's logs go to `on_line` until it ends; the
    run id and the last error line the apps logged (None if none). `members`: the number of
    simulated SuperNodes (simulation SuperLinks only)."""
    command = [executable("flwr"), "run", str(app), CONNECTION, "--stream"]
    if members is not None:
        command += ["--federation-config", f"num-supernodes={members}"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=flower_env(home),
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    run_id, error = None, None
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip("\n")
        if run_id is None and "Successfully started run" in line:
            run_id = int(line.split("Successfully started run", 1)[1].split()[0])
        raised = _RAISED.search(line)
        if raised:
            error = raised.group(1).strip()
        on_line(line)
    if process.wait() != 0 or run_id is None:
        raise FederatedError(
            "`flwr run` could not start the alliance's run", hint="see its log above"
        )
    return run_id, error


def run_status(home: Path, run_id: int) -> str:
    """The run's status as Flower reports it, e.g. finished:completed or finished:failed."""
    listed = subprocess.run(
        [executable("flwr"), "list", CONNECTION, "--run-id", str(run_id), "--format", "json"],
        capture_output=True,
        text=True,
        env=flower_env(home),
        timeout=60,
    )
    try:
        return str(json.loads(listed.stdout)["runs"][0]["status"])
    except (ValueError, KeyError, IndexError):
        return "unknown"


def wait_for_port(process: FlowerProcess, host: str, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise FederatedError(
                f"the {process.name} exited at start:\n{process.log_tail()}",
                hint=f"its log: {process.log_path}",
            )
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    process.stop()
    raise FederatedError(f"the {process.name} did not listen on {host}:{port} within {timeout:g}s")
