"""A deployment on loopback, as users run it: `openparity federated serve` and one
`openparity federated join` per member, each a real process (with its Flower children)."""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import contextmanager, suppress
from pathlib import Path

from openparity.models.local_server import free_port
from tests.cli import CLI


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("wb") as handle:
        return subprocess.Popen(
            [*CLI, "federated", *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal the process and every Flower process it started (one session)."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    process.wait(timeout=60)


def crash_member(join: subprocess.Popen, data: Path) -> None:
    """A member's machine goes down: SIGKILL to its `join` and to its SuperNode's process
    group (the SuperNode and the Flower processes it started), with no goodbye."""
    marker = str(data.resolve()).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"flower-supernode" in command and marker in command:
            with suppress(ProcessLookupError):
                os.killpg(os.getpgid(int(entry.name)), signal.SIGKILL)
    kill_group(join, signal.SIGKILL)


@contextmanager
def deployment(
    directory: Path, members: list[Path], serve_args: list[str], join_args: tuple[str, ...] = ()
):
    """Yields (coordinator process, {member index: join process}); everything is stopped on
    exit. The coordinator's output is `directory / "run"`."""
    port = free_port()
    coordinator = _start(
        [
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "-o",
            str(directory / "run"),
            *serve_args,
        ],
        directory / "serve.log",
    )
    joins = {
        index: _start(
            [
                "join",
                "--superlink",
                f"127.0.0.1:{port}",
                "--data",
                str(data),
                "--home",
                str(directory / f"member-{index}"),
                *join_args,
            ],
            directory / f"join-{index}.log",
        )
        for index, data in enumerate(members)
    }
    try:
        yield coordinator, joins
    finally:
        for process in [*joins.values(), coordinator]:
            if process.poll() is None:
                kill_group(process, signal.SIGTERM)


def write_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate it signed for 127.0.0.1 / localhost: (ca, cert, key) files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("alliance CA"))
        .issuer_name(name("alliance CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.DNSName("localhost"),
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths
