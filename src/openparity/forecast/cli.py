"""CLI of the decision tools: `openparity forecast`."""

from __future__ import annotations

from pathlib import Path

import typer

DEFAULT_SCENARIO = Path(__file__).parent / "scenarios" / "seed-parity.yaml"


def register(app: typer.Typer) -> None:
    app.command()(forecast)


def forecast(
    scenario: Path = typer.Argument(
        DEFAULT_SCENARIO, help="Scenario YAML (default: the seed's scenario).", show_default=False
    ),
    draws: int = typer.Option(200_000, "--draws", min=100, help="Monte Carlo draws."),
    seed: int = typer.Option(0, "--seed", help="Seed (same seed, same numbers)."),
    sampling: str = typer.Option("mc", "--sampling", help="mc, lhs (Latin hypercube) or sobol."),
    no_sensitivity: bool = typer.Option(False, "--no-sensitivity", help="Skip tornado and Sobol."),
    fmt: str = typer.Option("terminal", "--format", help="terminal, json or html."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the report here."),
) -> None:
    """Probability that open models reach parity, from a scenario of factors (Monte Carlo)."""
    from openparity.console import emit_report, report_kind
    from openparity.errors import OpenparityError
    from openparity.forecast import report
    from openparity.forecast.montecarlo import forecast as run_forecast
    from openparity.forecast.scenario import load_scenario

    if sampling not in ("mc", "lhs", "sobol"):
        raise OpenparityError(f"unknown sampling {sampling!r}", hint="use mc, lhs or sobol")
    writers = {"json": report.to_json, "html": report.to_html}
    report_kind(fmt, output, writers)
    result = run_forecast(
        load_scenario(scenario),
        draws=draws,
        seed=seed,
        sampling=sampling,
        sensitivity=not no_sensitivity,
    )
    emit_report(result, fmt, output, writers, report.render_terminal)
