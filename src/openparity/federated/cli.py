"""CLI of the data alliance: `openparity federated simulate | serve | join | report`."""

from __future__ import annotations

import contextlib
import math
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from openparity.console import Column, print_json, print_table
from openparity.console import err as progress_console
from openparity.console import out as console
from openparity.federated.settings import FederationSettings
from openparity.settings_cli import options_from

federated_app = typer.Typer(
    help="Federated LoRA fine-tuning across organisations on Flower (simulation or deployment)."
)

AS_JSON = typer.Option(False, "--json", help="Print the run's history as JSON.")
VERBOSE = typer.Option(False, "--verbose", "-v", help="Show every line of Flower's log.")
_SHOWN = re.compile(r"\[ROUND|Waiting for nodes|aggregate_train|ERROR|continuing|Privacy spent")


def register(app: typer.Typer) -> None:
    app.add_typer(federated_app, name="federated")


@federated_app.command("simulate")
@options_from(FederationSettings, required=("output",))
def simulate_command(
    data: list[Path] = typer.Option(
        ..., "--data", help="A member's data (an `openparity data` folder or JSONL); repeat it."
    ),
    members: int = typer.Option(
        0, "--members", min=0, help="Split a single --data into this many members."
    ),
    split: str = typer.Option(
        "iid",
        "--split",
        help="With --members: iid (by record id) or a record field (non-IID, e.g. topic).",
    ),
    as_json: bool = AS_JSON,
    verbose: bool = VERBOSE,
    settings: FederationSettings = ...,
) -> None:
    """Run the alliance on this machine: one simulated SuperNode per member (Flower + Ray)."""
    from openparity.federated.alliance import simulate
    from openparity.federated.partition import split_members

    output = Path(settings.output)
    if members:
        if len(data) != 1:
            raise typer.BadParameter("--members splits exactly one --data")
        data = split_members(data[0], members, split, output / "members")
    _stop_on_sigterm()
    final = simulate(settings, data, on_line=_log_line(verbose))
    _report(output, final, as_json)


@federated_app.command("compare")
@options_from(
    FederationSettings,
    leave_out=(
        "fraction",
        "min_members",
        "dp_noise",
        "dp_clip",
        "dp_delta",
        "secure",
        "secure_threshold",
        "secure_max_weight",
    ),
    defaults={"round_timeout": 3600.0},
    required=("output", "eval_task"),
    flags={"strategy": "--alliance"},
    helps={
        "strategy": "The strategy judged against every arm (fedavg and fedprox always run).",
        "eval_task": "The held-out metric's task.",
    },
)
def compare_command(
    data: Path = typer.Option(..., "--data", help="One dataset to deal to the members."),
    members: int = typer.Option(4, "--members", min=2, help="Members to split it into."),
    split: str = typer.Option("topic", "--split", help="A record field (non-IID) or iid."),
    also_eval: list[str] = typer.Option(
        [],
        "--also-eval",
        help="Another task to score every arm on, with its own table (repeatable), e.g. a "
        "reference_likelihood task next to a 0/1 one.",
    ),
    as_json: bool = AS_JSON,
    verbose: bool = VERBOSE,
    settings: FederationSettings = ...,
) -> None:
    """Alliance (FedAvg, FedProx, and --alliance) vs central training vs each member alone vs
    the base, on the same held-out items, paired. Minutes per arm: progress goes to stderr."""
    from openparity.federated.compare_arms import compare

    settings = replace(settings, min_members=members)
    output, alliance = Path(settings.output), settings.strategy
    _stop_on_sigterm()
    with contextlib.redirect_stdout(sys.stderr):  # what the libraries print while training
        report = compare(settings, data, members, split, output, _log_line(verbose), also_eval)
    if as_json:
        print_json(report)
        return
    for table in [report, *report["also"]]:
        _print_compare_table(table, alliance, f"split {split}")
    console.print(f"report: {output / 'compare.json'}")


def _print_compare_table(table: dict[str, Any], alliance: str, split: str) -> None:
    """One metric's arms (with their training facts when the table carries them) and the
    verdict on that metric."""
    training = "steps" in table["arms"][0]
    columns = [Column("arm", identifier=True)]
    if training:
        columns += [Column("steps", numeric=True), Column("rounds", numeric=True)]
    columns += [Column(f"{table['metric']} (95% CI)"), Column(f"{alliance} - arm (95% CI), p")]
    if training:
        columns.append(Column("MB per round", optional=True))
    rows = []
    for arm in table["arms"]:
        versus = arm.get("alliance_minus_this")
        row = [arm["arm"]] + ([str(arm["steps"]), str(arm["rounds"])] if training else [])
        row += [
            f"{arm['score']:.3f} [{arm['low']:.3f}, {arm['high']:.3f}] n={arm['n']}",
            "-" if versus is None else _versus(versus),
        ]
        if training:
            row.append(f"{arm['bytes_per_round'] / 1e6:.2f}")
        rows.append(row)
    print_table(columns, rows, title=f"federated compare: {table['task']}, {split}")
    verdict = "beats" if table["alliance_beats_every_member_alone"] else "does not beat"
    console.print(f"on {table['task']}, {alliance} {verdict} every member alone (95% CIs above 0)")


def _versus(test: dict[str, Any]) -> str:
    if test.get("no_interval"):
        return f"{test['diff']:+.3f} (no interval: {test['no_interval']}), p={test['p']:.3g}"
    return f"{test['diff']:+.3f} [{test['low']:+.3f}, {test['high']:+.3f}], p={test['p']:.3g}"


@federated_app.command("serve")
@options_from(FederationSettings, required=("output",))
def serve_command(
    host: str = typer.Option("0.0.0.0", "--host", help="Address the SuperLink listens on."),
    port: int = typer.Option(9091, "--port", help="The SuperLink's port (members join it)."),
    ssl_certfile: Path | None = typer.Option(None, "--ssl-certfile", help="TLS certificate."),
    ssl_keyfile: Path | None = typer.Option(None, "--ssl-keyfile", help="TLS key."),
    ssl_ca_certfile: Path | None = typer.Option(None, "--ssl-ca-certfile", help="TLS CA."),
    as_json: bool = AS_JSON,
    verbose: bool = VERBOSE,
    settings: FederationSettings = ...,
) -> None:
    """Coordinate a deployment: start a SuperLink, wait for --min-members to join, run."""
    from openparity.federated.alliance import serve
    from openparity.federated.errors import FederatedError
    from openparity.federated.runtime import Tls

    tls = Tls(ssl_certfile, ssl_keyfile, ssl_ca_certfile)
    if any((ssl_certfile, ssl_keyfile, ssl_ca_certfile)) and not all(
        (ssl_certfile, ssl_keyfile, ssl_ca_certfile)
    ):
        raise FederatedError("TLS needs --ssl-certfile, --ssl-keyfile and --ssl-ca-certfile")
    progress_console.print(
        f"SuperLink on {host}:{port}; members join with: openparity federated join"
        f" --superlink THIS_HOST:{port} --data THEIR_DATA"
    )
    _stop_on_sigterm()
    final = serve(settings, host=host, port=port, tls=tls, on_line=_log_line(verbose))
    _report(Path(settings.output), final, as_json)


@federated_app.command("join")
def join_command(
    superlink: str = typer.Option(..., "--superlink", help="The coordinator's HOST:PORT."),
    data: Path = typer.Option(..., "--data", help="This member's private data (never sent)."),
    home: Path = typer.Option(
        Path(".openparity/federated-member"), "--home", help="This member's Flower directory."
    ),
    port: int = typer.Option(0, "--port", help="Local port of the member's app API (0: free)."),
    root_certificates: Path | None = typer.Option(
        None, "--root-certificates", help="CA certificate of a TLS SuperLink."
    ),
) -> None:
    """Join an alliance as a member (a SuperNode) until the coordinator's runs end or Ctrl-C."""
    from openparity.federated.alliance import join
    from openparity.federated.errors import FederatedError
    from openparity.models.local_server import free_port

    _stop_on_sigterm()
    node = join(
        superlink, data, home=home, port=port or free_port(), root_certificates=root_certificates
    )
    progress_console.print(f"joined {superlink} with {data}; log: {node.log_path}; Ctrl-C leaves")
    try:
        code = node.process.wait()
        if code:
            raise FederatedError(f"the SuperNode exited with status {code}:\n{node.log_tail()}")
    except KeyboardInterrupt:
        progress_console.print("leaving the alliance")
    finally:
        node.stop()


@federated_app.command("report")
def report_command(
    output: Path = typer.Argument(..., help="A coordinator's run directory."),
    as_json: bool = AS_JSON,
) -> None:
    """The rounds of a federated run: members, losses, global score, bytes."""
    _report(output, output / "final", as_json)


def _stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the Flower processes this command started are stopped."""
    import signal

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _log_line(verbose: bool) -> Any:
    def show(line: str) -> None:
        if verbose or _SHOWN.search(line):
            print(line, file=sys.stderr, flush=True)

    return show


def _report(output: Path, final: Path, as_json: bool) -> None:
    from openparity.federated.coordinator import read_history

    history = read_history(output)
    if as_json:
        print_json({"final": str(final), "rounds": history})
        return
    columns = [
        Column("round"),
        Column("members"),
        Column("failed"),
        Column("train loss"),
        Column("validation loss"),
        Column("global score (95% CI)"),
        Column("epsilon", optional=True),
        Column("MB per member", optional=True),
        Column("s", optional=True),
    ]
    rows = [_row(entry) for entry in history]
    if not any("privacy" in entry for entry in history):  # no DP: no epsilon column
        columns.pop(6)
        rows = [row[:6] + row[7:] for row in rows]
    print_table(columns, rows, title=f"federated run {output}")
    console.print(f"global adapter: {final} (model spec hf:{final})")


def _row(entry: dict[str, Any]) -> list[str]:
    train, validation = entry.get("train", {}), entry.get("validation", {})
    score = entry.get("global")
    shown = "-"
    if score:
        ci = "" if math.isnan(score["low"]) else f" [{score['low']:.3f}, {score['high']:.3f}]"
        shown = f"{score['score']:.3f}{ci} n={score['n']}"
    failed = len(entry.get("failed", []))
    return [
        str(entry["round"]),
        str(train.get("members", "-")),
        str(failed) + (" (skipped)" if entry.get("skipped") else ""),
        f"{train['train-loss']:.4f}" if "train-loss" in train else "-",
        f"{validation['validation-loss']:.4f}" if "validation-loss" in validation else "-",
        shown,
        f"{entry['privacy']['epsilon']:.2f}" if "privacy" in entry else "-",
        _megabytes(entry),
        f"{entry.get('seconds', 0):.0f}",
    ]


def _megabytes(entry: dict[str, Any]) -> str:
    """MB a member receives (the adapter); under SecAgg+ also what it sends (masked, larger)."""
    down = f"{entry.get('adapter_bytes', 0) / 1e6:.2f}"
    members = entry.get("train", {}).get("members")
    if "secure_upload_bytes" not in entry or not members:
        return down
    return f"{down} down, {entry['secure_upload_bytes'] / members / 1e6:.2f} up"
