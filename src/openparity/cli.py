"""The `openparity` command. Each capability adds its own sub-commands from its folder; this
module only wires them together and turns expected failures into one clear line."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from openparity import __version__
from openparity.console import out, print_error, print_json
from openparity.errors import OpenparityError


def _hide_flag_types() -> None:
    """Typer 0.29 labels on/off flags `<bool>` in --help as if they took a value: show none."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is not None:
        TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else shown(self, ctx)


_hide_flag_types()

app = typer.Typer(
    name="openparity",
    help="Measure, close and route around the gap between open and closed LLMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        out.print(f"openparity {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """openparity: measure the gap, close it, route around it, decide."""


@app.command()
def doctor(
    models_file: Path | None = typer.Option(None, "--models", help="models.yaml to check."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """What is installed, where the embedded model is, which backends answer."""
    from openparity.doctor import diagnose, render

    report = diagnose(models_file)
    if as_json:
        print_json(report.to_dict())
    else:
        render(report)
    if not report.ok:
        raise typer.Exit(1)


def _register_capabilities() -> None:
    from openparity.align.cli import register as register_align
    from openparity.bench.cli import register as register_bench
    from openparity.data.cli import register as register_data
    from openparity.federated.cli import register as register_federated
    from openparity.forecast.cli import register as register_forecast
    from openparity.models.cli import register as register_models
    from openparity.moe.cli import register as register_moe
    from openparity.moe.sparse_cli import register as register_sparse
    from openparity.route.cli import register as register_route

    register_models(app)
    register_bench(app)
    register_forecast(app)
    register_route(app)
    register_moe(app)
    register_sparse(app)
    register_data(app)
    register_align(app)
    register_federated(app)


_register_capabilities()


def main() -> None:
    """Entry point. Expected failures print one line and exit with status 2 (as usage errors do)."""
    try:
        app()
    except OpenparityError as exc:
        print_error(exc.one_line())
        sys.exit(2)


if __name__ == "__main__":
    main()
