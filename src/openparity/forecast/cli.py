"""CLI of the decision tools: `openparity forecast`."""

from __future__ import annotations

from pathlib import Path

import typer

DEFAULT_SCENARIO = Path(__file__).parent / "scenarios" / "seed-parity.yaml"


def register(app: typer.Typer) -> None:
    app.command()(forecast)
    app.command()(cost)
    app.command()(advise)
    app.command()(trend)


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


def cost(
    closed: str = typer.Option("openai:gpt-4o", "--closed", help="Closed model (its price)."),
    gpu_hourly: float = typer.Option(..., "--gpu-hourly", help="USD per GPU-hour."),
    gpus: int = typer.Option(1, "--gpus", min=1),
    throughput: float = typer.Option(
        ..., "--throughput", help="Sustained output tokens/s of the deployment (measured)."
    ),
    requests: float = typer.Option(..., "--requests", help="Requests per month."),
    prompt_tokens: float = typer.Option(500, "--prompt-tokens", help="Per request."),
    completion_tokens: float = typer.Option(200, "--completion-tokens", help="Per request."),
    utilisation: float = typer.Option(0.6, "--utilisation"),
    ops_overhead: float = typer.Option(0.2, "--ops-overhead"),
    open_share: float = typer.Option(1.0, "--open-share", help="Share answered open-first."),
    open_share_from: str | None = typer.Option(
        None,
        "--open-share-from",
        help="Gateway ledger (file or postgresql:// URL): use the open share it measured.",
    ),
    models_file: Path | None = typer.Option(None, "--models", help="models.yaml to read."),
    fmt: str = typer.Option("terminal", "--format", help="terminal, json or html."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the report here."),
) -> None:
    """Cost per month and per million tokens: closed API vs self-hosted vs hybrid."""
    from openparity.console import emit_report, report_kind
    from openparity.errors import OpenparityError
    from openparity.forecast import cost_report
    from openparity.forecast.cost import SelfHosting, Traffic, compare_costs
    from openparity.models import resolve_model

    writers = {"json": cost_report.to_json, "html": cost_report.to_html}
    report_kind(fmt, output, writers)
    spec = resolve_model(closed, models_file=models_file)
    if spec.price is None:
        raise OpenparityError(
            f"no price known for {spec.name}",
            hint="set price: {input: ..., output: ...} in models.yaml",
        )
    hosting = SelfHosting(gpu_hourly, gpus, throughput, utilisation, ops_overhead)
    traffic = Traffic(requests, prompt_tokens, completion_tokens)
    share_source = "assumed"
    if open_share_from is not None:
        from openparity.route.ledger_db import as_target
        from openparity.route.ledger_summary import ledger_stats

        measured = ledger_stats(as_target(open_share_from))
        if not measured.answered:
            raise OpenparityError(f"the ledger {measured.path} has no answered requests yet")
        open_share = measured.open_share
        share_source = f"measured on {measured.answered} gateway requests"
    study = cost_report.CostStudy(
        spec.name,
        f"{spec.price.input_per_mtok:g} / {spec.price.output_per_mtok:g} USD per Mtok in/out"
        f" ({spec.price.source}, {spec.price.as_of})",
        hosting,
        traffic,
        compare_costs(spec.price, hosting, traffic, open_share=open_share),
        share_source,
    )
    emit_report(study, fmt, output, writers, cost_report.render_terminal)


def advise(
    size: str = typer.Option(..., "--size", help="startup, midsize or enterprise."),
    requests: float = typer.Option(..., "--requests", help="Requests per month."),
    ml_engineers: int = typer.Option(..., "--ml-engineers", min=0),
    compliance: str = typer.Option(
        "none", "--compliance", help="none, data-residency, air-gapped."
    ),
    break_even: float | None = typer.Option(
        None, "--break-even", help="Break-even requests/month (from openparity cost)."
    ),
    cost_report: Path | None = typer.Option(
        None, "--cost-report", help="JSON from openparity cost --format json: its break-even."
    ),
    gap_report: Path | None = typer.Option(
        None, "--gap-report", help="JSON from openparity gap --format json."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Which way to go (the seed's selection matrix as rules), with its reasons and risks."""
    from dataclasses import asdict

    from rich.markup import escape

    from openparity.console import out, print_json
    from openparity.errors import OpenparityError
    from openparity.forecast.advice import Situation, load_break_even, load_verdicts
    from openparity.forecast.advice import advise as decide

    if cost_report is not None:
        if break_even is not None:
            raise OpenparityError("give --break-even or --cost-report, not both")
        break_even = load_break_even(cost_report)

    if size not in ("startup", "midsize", "enterprise"):
        raise OpenparityError(f"unknown size {size!r}", hint="use startup, midsize or enterprise")
    if compliance not in ("none", "data-residency", "air-gapped"):
        raise OpenparityError(
            f"unknown compliance {compliance!r}", hint="use none, data-residency or air-gapped"
        )
    verdicts = load_verdicts(gap_report) if gap_report else {}
    advice = decide(Situation(size, requests, ml_engineers, compliance, break_even, verdicts))
    if as_json:
        print_json(asdict(advice))
        return
    out.print(f"[bold]{escape(advice.recommendation)}[/]")
    for reason in advice.why:
        out.print(f"  because {escape(reason)}")
    for risk in advice.risks:
        out.print(f"  [yellow]risk:[/] {escape(risk)}")


def trend(
    benchmark: str = typer.Option("mmlu", "--benchmark", help="Benchmark name in the scores."),
    by: str = typer.Option("2026-12-31", "--by", help="Date (YYYY-MM-DD) to forecast."),
    margin: float = typer.Option(1.0, "--margin", help="Parity margin in points."),
    scores: Path | None = typer.Option(None, "--scores", help="Scores CSV (default: public)."),
    add: list[Path] = typer.Option([], "--add", help="More scores CSVs."),
    add_gap: list[Path] = typer.Option(
        [], "--add-gap", help="Your measured gaps: openparity gap JSON reports (one per date)."
    ),
    fmt: str = typer.Option("terminal", "--format", help="terminal, json or html."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the report here."),
) -> None:
    """Open-vs-closed gap over time and P(gap <= margin) by a date: the published frontier's,
    or yours when --add-gap gives your measured gaps."""
    import datetime as dt

    from openparity.console import emit_report, err, report_kind
    from openparity.forecast import trend_report
    from openparity.forecast.trend import (
        PUBLIC_SCORES,
        TrendError,
        forecast_trend,
        gaps_from_gap_report,
        read_scores,
    )

    writers = {"json": trend_report.to_json, "html": trend_report.to_html}
    report_kind(fmt, output, writers)
    try:
        when = dt.date.fromisoformat(by)
    except ValueError:
        raise TrendError(f"--by {by!r} is not YYYY-MM-DD") from None
    rows = read_scores(scores or PUBLIC_SCORES)
    for path in add:
        rows += read_scores(path)
    measured = []
    for path in add_gap:
        gaps = gaps_from_gap_report(path)
        used = [g for g in gaps if g.benchmark == benchmark.lower()]
        measured += used
        tasks = ", ".join(sorted({g.benchmark for g in gaps})) or "none"
        err.print(
            f"{path}: "
            + "; ".join(
                f"your {g.benchmark} gap {g.gap:.1f} points [{g.ci95[0]:.1f}, {g.ci95[1]:.1f}]"
                f" on {g.date} ({g.open_model} vs {g.closed_model})"
                for g in used
            )
            + ("" if used else f"no {benchmark.lower()} task in it (its tasks: {tasks})"),
            soft_wrap=True,
        )
    result = forecast_trend(rows, benchmark.lower(), when, margin, measured)
    emit_report(result, fmt, output, writers, trend_report.render_terminal)
