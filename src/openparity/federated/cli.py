"""CLI of the data alliance: `openparity federated simulate | serve | join | report`."""

from __future__ import annotations

import contextlib
import math
import re
import sys
from pathlib import Path
from typing import Any

import typer

from openparity.console import Column, print_json, print_table
from openparity.console import err as progress_console
from openparity.console import out as console

federated_app = typer.Typer(
    help="Federated LoRA fine-tuning across organisations on Flower (simulation or deployment)."
)

BASE = typer.Option("smollm2-135m", "--base", help="Shared base model (alias, GGUF, dir, hub id).")
OUTPUT = typer.Option(..., "--output", "-o", help="Coordinator's run directory (rounds, final/).")
ROUNDS = typer.Option(3, "--rounds", min=1, help="Federated rounds.")
STRATEGY = typer.Option("fedavg", "--strategy", help="fedavg, fedprox, fedadam or fedavgm.")
MU = typer.Option(0.01, "--mu", help="FedProx proximal weight.")
SERVER_LR = typer.Option(0.001, "--server-lr", help="FedAdam server step size.")
SERVER_STEP = typer.Option(
    1.0, "--server-step", help="FedAvgM: the global update is this multiple of the average."
)
SERVER_MOMENTUM = typer.Option(
    0.0,
    "--server-momentum",
    help="FedAvgM: momentum of the global updates (saved with each round).",
)
FRACTION = typer.Option(1.0, "--fraction", help="Share of members asked to train each round.")
MIN_MEMBERS = typer.Option(2, "--min-members", min=1, help="Members a round needs.")
TIMEOUT = typer.Option(600.0, "--round-timeout", help="Seconds to wait for a round's replies.")
LOCAL_STEPS = typer.Option(4, "--local-steps", min=1, help="Optimizer steps per member per round.")
BATCH = typer.Option(4, "--batch-size", min=1, help="Examples per local step.")
LR = typer.Option(2e-4, "--lr", help="Members' learning rate (constant).")
LORA_R = typer.Option(8, "--lora-r", min=1, help="LoRA rank.")
MAX_LEN = typer.Option(256, "--max-length", min=16, help="Tokens per example (truncated).")
VALIDATION = typer.Option(0.1, "--validation-share", help="Each member's held-out share.")
SEED = typer.Option(0, "--seed", help="Seed of the adapters, data order and member sampling.")
DECONTAM = typer.Option(
    "gsm8k,humaneval,mbpp",
    "--decontaminate",
    help="Benchmarks no member record may contain (dropped before training); '' for none.",
)
EVAL_TASK = typer.Option("", "--eval-task", help="Harness task scored after each round.")
EVAL_ITEMS = typer.Option(0, "--eval-items", min=0, help="That task's first N items (0: all).")
THREADS = typer.Option(0, "--threads", min=0, help="Torch threads per member (0: default).")
DP_NOISE = typer.Option(0.0, "--dp-noise", min=0, help="DP noise multiplier (0: no DP).")
DP_CLIP = typer.Option(0.1, "--dp-clip", help="DP: L2 bound of each member's update.")
DP_DELTA = typer.Option(1e-5, "--dp-delta", help="DP: the delta epsilon is reported at.")
SECURE = typer.Option(
    False, "--secure", help="SecAgg+: the coordinator sees only the sum of the updates."
)
SECURE_THRESHOLD = typer.Option(
    0.6, "--secure-threshold", help="SecAgg+: share of neighbours that can unmask a dropout."
)
SECURE_MAX_WEIGHT = typer.Option(
    1000.0, "--secure-max-weight", help="SecAgg+: the largest member's example count."
)
AS_JSON = typer.Option(False, "--json", help="Print the run's history as JSON.")
VERBOSE = typer.Option(False, "--verbose", "-v", help="Show every line of Flower's log.")
_SHOWN = re.compile(r"\[ROUND|Waiting for nodes|aggregate_train|ERROR|continuing|Privacy spent")


def register(app: typer.Typer) -> None:
    app.add_typer(federated_app, name="federated")


@federated_app.command("simulate")
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
    base: str = BASE,
    output: Path = OUTPUT,
    rounds: int = ROUNDS,
    strategy: str = STRATEGY,
    mu: float = MU,
    server_lr: float = SERVER_LR,
    server_step: float = SERVER_STEP,
    server_momentum: float = SERVER_MOMENTUM,
    fraction: float = FRACTION,
    min_members: int = MIN_MEMBERS,
    round_timeout: float = TIMEOUT,
    local_steps: int = LOCAL_STEPS,
    batch_size: int = BATCH,
    lr: float = LR,
    lora_r: int = LORA_R,
    max_length: int = MAX_LEN,
    validation_share: float = VALIDATION,
    seed: int = SEED,
    decontaminate: str = DECONTAM,
    eval_task: str = EVAL_TASK,
    eval_items: int = EVAL_ITEMS,
    threads: int = THREADS,
    dp_noise: float = DP_NOISE,
    dp_clip: float = DP_CLIP,
    dp_delta: float = DP_DELTA,
    secure: bool = SECURE,
    secure_threshold: float = SECURE_THRESHOLD,
    secure_max_weight: float = SECURE_MAX_WEIGHT,
    as_json: bool = AS_JSON,
    verbose: bool = VERBOSE,
) -> None:
    """Run the alliance on this machine: one simulated SuperNode per member (Flower + Ray)."""
    from openparity.federated.alliance import simulate
    from openparity.federated.partition import split_members

    options = locals()
    settings = _settings(options)
    if members:
        if len(data) != 1:
            raise typer.BadParameter("--members splits exactly one --data")
        data = split_members(data[0], members, split, output / "members")
    _stop_on_sigterm()
    final = simulate(settings, data, on_line=_log_line(verbose))
    _report(output, final, as_json)


@federated_app.command("compare")
def compare_command(
    data: Path = typer.Option(..., "--data", help="One dataset to deal to the members."),
    members: int = typer.Option(4, "--members", min=2, help="Members to split it into."),
    split: str = typer.Option("topic", "--split", help="A record field (non-IID) or iid."),
    alliance: str = typer.Option(
        "fedavg",
        "--alliance",
        help="The strategy judged against every arm (fedavg and fedprox always run).",
    ),
    base: str = BASE,
    output: Path = OUTPUT,
    rounds: int = ROUNDS,
    mu: float = MU,
    server_lr: float = SERVER_LR,
    server_step: float = SERVER_STEP,
    server_momentum: float = SERVER_MOMENTUM,
    round_timeout: float = typer.Option(
        3600.0, "--round-timeout", help="Seconds to wait for a round's replies."
    ),
    local_steps: int = LOCAL_STEPS,
    batch_size: int = BATCH,
    lr: float = LR,
    lora_r: int = LORA_R,
    max_length: int = MAX_LEN,
    validation_share: float = VALIDATION,
    seed: int = SEED,
    decontaminate: str = DECONTAM,
    eval_task: str = typer.Option(..., "--eval-task", help="The held-out metric's task."),
    also_eval: list[str] = typer.Option(
        [],
        "--also-eval",
        help="Another task to score every arm on, with its own table (repeatable), e.g. a "
        "reference_likelihood task next to a 0/1 one.",
    ),
    eval_items: int = EVAL_ITEMS,
    threads: int = THREADS,
    as_json: bool = AS_JSON,
    verbose: bool = VERBOSE,
) -> None:
    """Alliance (FedAvg, FedProx, and --alliance) vs central training vs each member alone vs
    the base, on the same held-out items, paired. Minutes per arm: progress goes to stderr."""
    from openparity.federated.compare import compare
    from openparity.federated.settings import FederationSettings

    defaults = FederationSettings()  # what compare does not let the user change
    fixed = {
        name: getattr(defaults, name)
        for name in (
            "fraction",
            "dp_noise",
            "dp_clip",
            "dp_delta",
            "secure",
            "secure_threshold",
            "secure_max_weight",
        )
    }
    options = {**locals(), **fixed, "strategy": alliance, "min_members": members}
    _stop_on_sigterm()
    with contextlib.redirect_stdout(sys.stderr):  # what the libraries print while training
        report = compare(
            _settings(options), data, members, split, output, _log_line(verbose), also_eval
        )
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
def serve_command(
    host: str = typer.Option("0.0.0.0", "--host", help="Address the SuperLink listens on."),
    port: int = typer.Option(9091, "--port", help="The SuperLink's port (members join it)."),
    ssl_certfile: Path | None = typer.Option(None, "--ssl-certfile", help="TLS certificate."),
    ssl_keyfile: Path | None = typer.Option(None, "--ssl-keyfile", help="TLS key."),
    ssl_ca_certfile: Path | None = typer.Option(None, "--ssl-ca-certfile", help="TLS CA."),
    base: str = BASE,
    output: Path = OUTPUT,
    rounds: int = ROUNDS,
    strategy: str = STRATEGY,
    mu: float = MU,
    server_lr: float = SERVER_LR,
    server_step: float = SERVER_STEP,
    server_momentum: float = SERVER_MOMENTUM,
    fraction: float = FRACTION,
    min_members: int = MIN_MEMBERS,
    round_timeout: float = TIMEOUT,
    local_steps: int = LOCAL_STEPS,
    batch_size: int = BATCH,
    lr: float = LR,
    lora_r: int = LORA_R,
    max_length: int = MAX_LEN,
    validation_share: float = VALIDATION,
    seed: int = SEED,
    decontaminate: str = DECONTAM,
    eval_task: str = EVAL_TASK,
    eval_items: int = EVAL_ITEMS,
    threads: int = THREADS,
    dp_noise: float = DP_NOISE,
    dp_clip: float = DP_CLIP,
    dp_delta: float = DP_DELTA,
    secure: bool = SECURE,
    secure_threshold: float = SECURE_THRESHOLD,
    secure_max_weight: float = SECURE_MAX_WEIGHT,
    as_json: bool = AS_JSON,
    verbose: bool = VERBOSE,
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
    settings = _settings(locals())
    progress_console.print(
        f"SuperLink on {host}:{port}; members join with: openparity federated join"
        f" --superlink THIS_HOST:{port} --data THEIR_DATA"
    )
    _stop_on_sigterm()
    final = serve(settings, host=host, port=port, tls=tls, on_line=_log_line(verbose))
    _report(output, final, as_json)


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


def _settings(options: dict[str, Any]) -> Any:
    from openparity.federated.settings import FederationSettings

    return FederationSettings(
        base=options["base"],
        output=str(options["output"]),
        rounds=options["rounds"],
        strategy=options["strategy"],
        proximal_mu=options["mu"],
        server_lr=options["server_lr"],
        server_step=options["server_step"],
        server_momentum=options["server_momentum"],
        fraction=options["fraction"],
        min_members=options["min_members"],
        round_timeout=options["round_timeout"],
        local_steps=options["local_steps"],
        batch_size=options["batch_size"],
        learning_rate=options["lr"],
        lora_r=options["lora_r"],
        lora_alpha=2 * options["lora_r"],
        max_length=options["max_length"],
        validation_share=options["validation_share"],
        seed=options["seed"],
        decontaminate=options["decontaminate"],
        eval_task=options["eval_task"],
        eval_items=options["eval_items"],
        threads=options["threads"],
        dp_noise=options["dp_noise"],
        dp_clip=options["dp_clip"],
        dp_delta=options["dp_delta"],
        secure=options["secure"],
        secure_threshold=options["secure_threshold"],
        secure_max_weight=options["secure_max_weight"],
    )


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
