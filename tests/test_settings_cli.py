"""Settings declared once: commands' options are built from settings dataclasses, and what a
command receives is exactly the dataclass its options describe."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from openparity.settings_cli import (
    REQUIRED,
    cli_option,
    comma_list,
    comma_text,
    options_from,
    setting,
)


@dataclasses.dataclass(frozen=True)
class Toy:
    name: str = setting(REQUIRED, ("--name", "-n"), "Who.")
    steps: int = setting(5, None, "Steps.", min=1)
    learning_rate: float = setting(0.1, "--lr", "Step size.")
    tasks: tuple[str, ...] = setting(
        ("a", "b"), None, "Tasks.", shown=str, parse=comma_list, show=comma_text
    )
    out: Path = setting(Path("out"), None, "Where.")
    quiet: bool = setting(False, "--quiet/--loud", "Say less.")
    internal: int = 7  # no CLI


def run(app: typer.Typer, *args: str) -> click.testing.Result:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def toy_app(**kwargs) -> tuple[typer.Typer, list]:
    app, seen = typer.Typer(), []

    @app.command()
    @options_from(Toy, **kwargs)
    def go(verbose: bool = typer.Option(False, "--verbose"), settings: Toy = ...) -> None:
        seen.append((verbose, settings))

    return app, seen


def test_options_build_the_settings_object() -> None:
    app, seen = toy_app()
    result = run(app, "-n", "张三", "--lr", "0.5", "--tasks", "x, y,", "--loud", "--verbose")
    assert result.exit_code == 0, result.output
    verbose, settings = seen[0]
    assert verbose is True
    assert settings == Toy(name="张三", learning_rate=0.5, tasks=("x", "y"), quiet=False)
    run(app, "--name", "a")
    assert seen[1][1] == Toy(name="a")  # every default is the dataclass's own


def test_help_shows_the_dataclass_defaults_and_hides_non_cli_fields() -> None:
    app, _ = toy_app()
    text = run(app, "--help").output
    assert "a,b" in text and "--internal" not in text and "Step size." in text
    assert "--steps" in text and "x>=1" in text


def test_checks_come_from_the_field() -> None:
    app, seen = toy_app()
    assert run(app, "-n", "a", "--steps", "0").exit_code == 2  # min=1
    assert run(app, "--steps", "2").exit_code == 2  # --name is required
    assert not seen


def test_per_command_changes() -> None:
    app, seen = toy_app(
        leave_out=("out",),
        fixed={"internal": 9},
        defaults={"steps": 3},
        required=("learning_rate",),
        flags={"tasks": "--benchmarks"},
        helps={"steps": "Fewer steps."},
    )
    text = run(app, "--help").output
    assert "--out" not in text and "--benchmarks" in text and "Fewer steps." in text
    assert run(app, "-n", "a").exit_code == 2  # --lr is now required
    assert run(app, "-n", "a", "--lr", "1", "--benchmarks", "").exit_code == 0
    assert seen[0][1] == Toy(name="a", learning_rate=1.0, steps=3, tasks=(), internal=9)


def test_stacked_settings_reach_their_own_parameters() -> None:
    @dataclasses.dataclass(frozen=True)
    class Shape:
        width: int = setting(4, None, "Width.")

    app, seen = typer.Typer(), []

    @app.command()
    @options_from(Shape, into="shape")
    @options_from(Toy)
    def go(shape: Shape = ..., settings: Toy = ...) -> None:
        seen.append((shape, settings))

    assert run(app, "--width", "9", "-n", "b").exit_code == 0
    assert seen == [(Shape(9), Toy(name="b"))]


def test_mistakes_in_a_declaration_fail_at_import() -> None:
    with pytest.raises(TypeError, match="no field"):
        options_from(Toy, leave_out=("nope",))
    with pytest.raises(TypeError, match="takes no 'settings'"):
        options_from(Toy)(lambda x: x)

    def clash(steps: int = 1, settings: Toy = ...) -> None: ...

    with pytest.raises(TypeError, match="its own 'steps'"):
        options_from(Toy)(clash)
    with pytest.raises(TypeError, match="mutable"):
        setting([1], None, "a list")


def _command(group: typer.Typer, name: str) -> click.Command:
    command = typer.main.get_command(group)  # a group of one command is that command
    return command.commands[name] if isinstance(command, click.Group) else command


def _declared_defaults(settings_type: type) -> dict[str, object]:
    values = {}
    for field in dataclasses.fields(settings_type):
        option = cli_option(field)
        if option is None or field.default is REQUIRED:
            continue
        values[field.name] = option.show(field.default) if option.show else field.default
    return values


FEDERATED = "openparity.federated.settings:FederationSettings"
ALIGN = "openparity.align.settings:AlignSettings"


@pytest.mark.parametrize(
    ("group", "command", "settings", "changed"),
    [
        ("openparity.federated.cli:federated_app", "simulate", FEDERATED, {}),
        ("openparity.federated.cli:federated_app", "serve", FEDERATED, {}),
        ("openparity.federated.cli:federated_app", "compare", FEDERATED, {"round_timeout": 3600.0}),
        ("openparity.align.cli:align_app", "sft", ALIGN, {}),
        ("openparity.align.cli:align_app", "dpo", ALIGN, {}),
        ("openparity.align.cli:align_app", "grpo", ALIGN, {"beta": 0.0}),
        ("openparity.moe.cli:moe_app", "train", "openparity.moe.settings:TrainSettings", {}),
        ("openparity.moe.cli:moe_app", "compare", "openparity.moe.settings:ModelOptions", {}),
        (
            "openparity.moe.sparse_cli:sparse_app",
            "compare",
            "openparity.sparse.options:SparseOptions",
            {},
        ),
    ],
)
def test_every_command_shows_its_settings_defaults(group, command, settings, changed) -> None:
    """The real commands: each option of a settings field has the dataclass's default (or the
    one the command declares it changes), so a default lives in one place."""
    params = {p.name: p for p in _command(_load(group), command).params}
    declared = {**_declared_defaults(_load(settings)), **changed}
    on_command = [name for name in declared if name in params]
    assert len(on_command) >= len(declared) / 2  # most of the family's options are there
    for name in on_command:
        if not params[name].required:
            assert _same(params[name].default, declared[name]), (name, params[name].default)


def _load(target: str):
    import importlib

    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _same(shown: object, declared: object) -> bool:
    return str(shown) == str(declared) if isinstance(declared, Path) else shown == declared
