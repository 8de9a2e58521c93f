"""Running the alliance: `simulate` (Flower's simulation engine on this machine) and `serve` /
`join` (a SuperLink and SuperNodes as separate processes). Both submit the same Flower App
(`app_project`) with `flwr run`; the coordinator's ServerApp writes the run directory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from openparity.federated.app_project import write_app
from openparity.federated.coordinator import check_resumable, completed_rounds
from openparity.federated.errors import FederatedError
from openparity.federated.member import read_member_data
from openparity.federated.runtime import (
    FlowerProcess,
    Tls,
    run_status,
    start_superlink,
    start_supernode,
    submit,
    write_connection,
)
from openparity.federated.settings import FederationSettings

COMPLETED = "finished:completed"


def simulate(
    settings: FederationSettings, member_data: list[Path], on_line: Callable[[str], None]
) -> Path:
    """Every member on this machine (one simulated SuperNode each); the final adapter."""
    if len(member_data) < 1:
        raise FederatedError("a simulation needs at least one member's data")
    for location in member_data:
        read_member_data(str(location), settings)  # a bad file fails here, before any process
    settings = simulation_settings(settings, member_data)
    return _run(settings, simulation_members=len(member_data), on_line=on_line)


def simulation_settings(
    settings: FederationSettings, member_data: list[Path]
) -> FederationSettings:
    """The settings a simulation of these members runs (and saves) under."""
    return replace(
        anchored(settings),
        member_data=";".join(str(p.resolve()) for p in member_data),
        min_members=min(settings.min_members, len(member_data)),
    )


def serve(
    settings: FederationSettings,
    *,
    host: str,
    port: int,
    tls: Tls,
    on_line: Callable[[str], None],
) -> Path:
    """A SuperLink on host:port for members to join, then the run; the final adapter."""
    settings = anchored(settings)
    return _run(settings, host=host, port=port, tls=tls, on_line=on_line)


def anchored(settings: FederationSettings) -> FederationSettings:
    """The settings with this directory's relative paths made absolute (the output, a task
    YAML file): Flower's app processes do not run in the user's directory."""

    def absolute(name: str) -> str:
        return str(Path(name).resolve()) if name and Path(name).is_file() else name

    return replace(
        settings,
        output=str(Path(settings.output).resolve()),
        eval_task=absolute(settings.eval_task),
        decontaminate=",".join(absolute(name) for name in settings.benchmarks),
    )


def join(
    superlink: str, data: Path, *, home: Path, port: int, root_certificates: Path | None
) -> FlowerProcess:
    """A SuperNode for this member: its ClientApp trains on `data`, which never leaves. The
    data is read once here, so a malformed file fails now, in one line, not in every round."""
    read_member_data(str(data), FederationSettings(decontaminate="", validation_share=0.0))
    return start_supernode(home, superlink, data, port, root_certificates=root_certificates)


def _run(
    settings: FederationSettings,
    *,
    on_line: Callable[[str], None],
    host: str = "127.0.0.1",
    port: int | None = None,
    tls: Tls = Tls(),
    simulation_members: int | None = None,
) -> Path:
    from openparity.models.local_server import free_port

    check_resumable(settings)
    output = Path(settings.output)
    home = output / ".flower"
    app = write_app(settings, home / "app")
    port = port or free_port()
    link = start_superlink(
        home, port, simulation=simulation_members is not None, tls=tls, host=host
    )
    try:
        write_connection(home, f"127.0.0.1:{port}", tls)
        run_id, error = submit(app, home, members=simulation_members, on_line=on_line)
        status = run_status(home, run_id)
    finally:
        link.stop()
    done = completed_rounds(output)
    if status != COMPLETED or not done or done[-1] < settings.rounds:
        raise FederatedError(
            f"the run ended {status} after {done[-1] if done else 0} of {settings.rounds} rounds"
            + (f": {error}" if error else ""),
            hint=f"the SuperLink's log: {link.log_path}; run again with the same --output to"
            " continue from the last saved round",
        )
    return output / "final"
