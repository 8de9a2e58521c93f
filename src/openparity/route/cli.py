"""CLI of the gateway: `openparity serve` and `openparity route calibrate|stats|keys`."""

from __future__ import annotations

import math
from pathlib import Path

import typer

route_app = typer.Typer(help="Hybrid gateway: calibrate checks, ledger stats, API keys.")
keys_app = typer.Typer(help="Gateway API keys (stored hashed in the ledger database).")
route_app.add_typer(keys_app, name="keys")

CONFIG = typer.Option(Path("gateway.yaml"), "--config", "-c", help="Gateway config YAML.")


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.add_typer(route_app, name="route")


def serve(
    config: Path = CONFIG,
    host: str | None = typer.Option(None, "--host", help="Overrides the config's host."),
    port: int | None = typer.Option(None, "--port", help="Overrides the config's port."),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Worker processes on the port (needs shared_state.redis_url)."
    ),
) -> None:
    """Run the OpenAI-compatible hybrid gateway (open model first, checked fallback)."""
    from openparity.console import err
    from openparity.models.endpoint import require_free_port
    from openparity.models.llama_probe import ensure_build_runs
    from openparity.models.local_backend import gguf_path
    from openparity.route.config import GatewayConfigError, load_gateway_config
    from openparity.route.server import create_app
    from openparity.route.server import serve as run_server

    settings = load_gateway_config(config)
    host, port = host or settings.host, port or settings.port
    if workers > 1 and settings.shared_state is None:
        raise GatewayConfigError(
            f"--workers {workers} needs shared_state.redis_url in {config}: without it each"
            " worker would keep its own rate limits, budgets and circuit breakers",
            hint="add `shared_state: {redis_url: redis://127.0.0.1:6379/0}`, or run one worker",
        )
    app = create_app(settings)  # bad keys, a bad config: one line, before the banner
    for tier in app.state.router.tiers:
        if tier.unavailable:
            err.print(
                f"warning: tier {tier.index} ({tier.name}) is unavailable: {tier.unavailable}",
                soft_wrap=True,
                markup=False,
                highlight=False,
            )
    if all(tier.unavailable for tier in app.state.router.tiers):
        raise GatewayConfigError("no tier can be used (see the warnings above)")
    for tier in app.state.router.tiers:  # a llama.cpp build that crashes here: one line too
        if tier.spec.backend == "local":
            ensure_build_runs(gguf_path(tier.spec))
    require_free_port(host, port)
    tiers = " -> ".join(t.name for t in app.state.router.tiers)  # passwords masked
    plural = f", {workers} workers" if workers > 1 else ""
    err.print(f"openparity gateway {settings.name!r} on http://{host}:{port}/v1{plural}: {tiers}")
    if workers > 1:  # each worker builds its own app from the config file
        app.state.ledger.close()
        run_server(
            None,
            host=host,
            port=port,
            workers=workers,
            config=config.resolve(),
            drain_s=settings.drain_seconds,
        )
    else:
        run_server(app, host=host, port=port, drain_s=settings.drain_seconds)


@route_app.command()
def stats(
    config: Path = CONFIG,
    ledger: str | None = typer.Option(
        None, "--ledger", help="Ledger file or postgresql:// URL (default: the config's)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Open share, fallback reasons and cost vs all-closed, from the gateway's ledger."""
    from openparity.console import print_json
    from openparity.route.ledger_db import as_target
    from openparity.route.ledger_summary import ledger_stats, render

    result = ledger_stats(as_target(ledger) if ledger else _ledger_target(config))
    if as_json:
        print_json(result.to_dict())
    else:
        render(result)


@route_app.command()
def calibrate(
    run: str = typer.Option(..., "--run", help="Harness run of the open (first-tier) model."),
    config: Path = CONFIG,
    epsilon: float = typer.Option(0.02, "--epsilon", help="Allowed rate of accepted-but-wrong."),
    delta: float = typer.Option(0.05, "--delta", help="1 - confidence of the guarantee."),
    risk: str = typer.Option(
        "joint", "--risk", help="joint: P(accepted and wrong); conditional: P(wrong | accepted)."
    ),
    store: Path | None = typer.Option(None, "--store", help="Run store (default .openparity/)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print, do not rewrite the config."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Choose check thresholds so accepted-but-wrong answers stay <= epsilon w.p. 1 - delta."""
    from openparity.bench.store import DEFAULT_STORE, RunStore
    from openparity.console import print_json
    from openparity.route.calibrate import apply, calibrate_run, render
    from openparity.route.config import load_gateway_config, save_gateway_config

    settings = load_gateway_config(config)
    with RunStore(store or DEFAULT_STORE) as runs:
        result = calibrate_run(runs, run, settings, epsilon=epsilon, delta=delta, risk=risk)
    if as_json:
        print_json(result.to_dict())
    else:
        render(result)
    if not dry_run and result.feasible:
        save_gateway_config(apply(settings, result), config)
        if not as_json:
            from openparity.console import out

            out.print(f"thresholds written to {config}")


@keys_app.command("add")
def keys_add(
    name: str = typer.Argument(..., help="A name for the key (who or what uses it)."),
    config: Path = CONFIG,
    rate: float | None = typer.Option(None, "--rate", help="Requests per second allowed."),
    budget: float | None = typer.Option(None, "--budget-usd", help="Spending limit in USD."),
    tpm: float | None = typer.Option(
        None, "--tpm", help="Tokens per minute allowed (prompt + answer, across replicas)."
    ),
) -> None:
    """Create a key; its secret is printed once, only its hash is stored."""
    from openparity.console import err, out
    from openparity.route.keys import add_key

    for option, value in (("--rate", rate), ("--budget-usd", budget), ("--tpm", tpm)):
        if value is not None and not value > 0:
            raise typer.BadParameter(f"{option} must be above 0 (got {value:g})")
    target = _ledger_target(config)
    secret = add_key(target, name, rate_per_s=rate, budget_usd=budget, tokens_per_min=tpm)
    out.print(secret, soft_wrap=True)
    err.print("store it now: it cannot be shown again")


@keys_app.command("list")
def keys_list(
    config: Path = CONFIG, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Active keys with their limits and what they spent."""
    from openparity.console import Column, print_json, print_table
    from openparity.route.keys import list_keys

    keys = list_keys(_ledger_target(config))
    if as_json:
        print_json(keys)
        return

    def limit(value: object, fmt: str) -> str:
        return "none" if value is None else fmt.format(value)

    rows = [
        [
            str(k["name"]),
            str(k["key_id"]),
            limit(k["rate_per_s"], "{:g}/s"),
            limit(k["tokens_per_min"], "{:,.0f}/min"),
            "none" if k["budget_usd"] is None else usd(float(k["budget_usd"])),  # type: ignore[arg-type]
            usd(float(k["spent_usd"])),
        ]  # type: ignore[arg-type]
        for k in keys
    ]
    columns = [
        Column("name"),
        Column("key id", optional=True),
        Column("rate", numeric=True),
        Column("tokens", numeric=True),
        Column("budget", numeric=True),
        Column("spent", numeric=True),
    ]
    print_table(columns, rows, title=f"gateway keys ({len(keys)} active)")


@keys_app.command("revoke")
def keys_revoke(name: str = typer.Argument(...), config: Path = CONFIG) -> None:
    """Revoke a key (the gateway stops accepting it within seconds)."""
    from openparity.console import out
    from openparity.route.keys import revoke_key

    revoke_key(_ledger_target(config), name)
    out.print(f"revoked {name}")


def usd(amount: float) -> str:
    """Dollars with enough digits to tell small amounts apart: $0.001 is not "$0.00"."""
    if amount == 0 or abs(amount) >= 1:
        return f"${amount:,.2f}"
    return "$" + f"{amount:.{max(2, 3 - math.floor(math.log10(abs(amount))))}f}".rstrip("0")


def _ledger_target(config: Path) -> Path | str:
    """The config's ledger: its SQLite file, or its PostgreSQL URL."""
    from openparity.route.config import load_gateway_config

    return load_gateway_config(config).ledger.target
