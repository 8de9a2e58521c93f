"""Settings declared once: a dataclass field carries its CLI flag and help, and a command's
options are built from the dataclass (the way TRL's `TrlParser` builds argparse from
`SFTConfig`).

    @dataclass(frozen=True)
    class RunSettings:
        steps: int = setting(50, "--steps", "Optimizer steps.", min=1)

    @app.command("train")
    @options_from(RunSettings)
    def train_command(data: Path = typer.Option(...), settings: RunSettings = ...) -> None: ...

The command keeps its own parameters (inputs, output format) and receives `settings`, one
object built from its options, so defaults, help and checks live in the dataclass alone and a
run directory can store exactly what the run was given.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import typer

_CLI = "openparity.cli"  # the metadata key of a field's CLI description
REQUIRED: Any = dataclasses.MISSING  # `setting(REQUIRED, ...)`: no default, a required option


@dataclasses.dataclass(frozen=True)
class CliOption:
    """How a settings field appears on the command line."""

    flags: tuple[str, ...]  # e.g. ("--lr",) or ("--json/--no-json",); () for "--field-name"
    help: str
    limits: Mapping[str, Any]  # typer.Option keywords: min, max
    shown: type | None = None  # the type the CLI reads when it differs from the field's
    parse: Callable[[Any], Any] | None = None  # from what the CLI read to the field's value
    show: Callable[[Any], Any] | None = None  # from the field's default to what --help shows


def setting(
    default: Any,  # or REQUIRED
    flag: str | tuple[str, ...] | None,
    help: str,
    *,
    shown: type | None = None,
    parse: Callable[[Any], Any] | None = None,
    show: Callable[[Any], Any] | None = None,
    **limits: Any,
) -> Any:
    """A dataclass field with a default and its CLI option. `flag=None` names it after the
    field (`server_lr` -> `--server-lr`); `shown` / `parse` / `show` convert when the command
    line spells the value differently (a comma list for a tuple)."""
    flags = () if flag is None else (flag,) if isinstance(flag, str) else tuple(flag)
    option = CliOption(flags, help, limits, shown, parse, show)
    if isinstance(default, (list, dict, set)):
        raise TypeError("a mutable default: use a tuple")
    if default is REQUIRED:
        return dataclasses.field(metadata={_CLI: option})
    return dataclasses.field(default=default, metadata={_CLI: option})


def cli_option(field: dataclasses.Field) -> CliOption | None:
    return field.metadata.get(_CLI)


def options_from(
    settings_type: type,
    *,
    leave_out: Iterable[str] = (),
    defaults: Mapping[str, Any] | None = None,
    required: Iterable[str] = (),
    flags: Mapping[str, str] | None = None,
    helps: Mapping[str, str] | None = None,
    fixed: Mapping[str, Any] | None = None,
    into: str = "settings",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command one option per CLI field of `settings_type` and call it with `settings=`
    (or `into=`) the object they build; stacked, one command takes several. Per command:
    `leave_out` hides fields (their dataclass default holds unless `fixed` sets them),
    `defaults` / `flags` / `helps` change a field's option, `required` makes it mandatory.
    Fields without `setting(...)` metadata are never options."""
    defaults, flags, helps, fixed = (
        dict(defaults or {}),
        dict(flags or {}),
        dict(helps or {}),
        dict(fixed or {}),
    )
    left_out, needed = set(leave_out) | set(fixed), set(required)
    all_fields = {f.name: f for f in dataclasses.fields(settings_type)}
    unknown = (left_out | needed | set(defaults) | set(flags) | set(helps)) - set(all_fields)
    if unknown:
        raise TypeError(f"{settings_type.__name__} has no field {sorted(unknown)}")

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(command)
        if into not in own.parameters:
            raise TypeError(f"{command.__name__} takes no {into!r} parameter")
        parameters = [
            parameter.replace(annotation=_resolved(parameter.annotation, command.__globals__))
            for name, parameter in own.parameters.items()
            if name != into
        ]
        taken = {p.name for p in parameters}
        options: dict[str, CliOption] = {}
        for name, field in all_fields.items():
            option = cli_option(field)
            if option is None or name in left_out:
                continue
            if name in taken:
                raise TypeError(f"{command.__name__} has its own {name!r} and a setting of it")
            options[name] = option
            default = defaults.get(name, field.default)
            if option.show is not None and name not in defaults and default is not REQUIRED:
                default = option.show(default)
            typer_option = typer.Option(
                ... if name in needed or default is REQUIRED else default,
                *_flags(name, option, flags.get(name)),
                help=helps.get(name, option.help),
                **option.limits,
            )
            parameters.append(
                inspect.Parameter(
                    name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=typer_option,
                    annotation=option.shown or _field_type(settings_type, field),
                )
            )

        @functools.wraps(command)
        def run(**values: Any) -> Any:
            given = {name: values.pop(name) for name in options}
            for name, option in options.items():
                if option.parse is not None:
                    given[name] = option.parse(given[name])
            return command(**{into: settings_type(**given, **fixed)}, **values)

        del run.__wrapped__  # typer reads the signature below, not the command's
        run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            sorted(parameters, key=lambda p: p.kind)
        )
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run

    return decorate


def _field_type(settings_type: type, field: dataclasses.Field) -> Any:
    """A field's annotation as a type, read in the dataclass's module; only CLI fields are
    read, so the others may name types imported for type checking alone."""
    return _resolved(field.type, vars(sys.modules[settings_type.__module__]))


def _resolved(annotation: Any, namespace: dict[str, Any]) -> Any:
    """Under `from __future__ import annotations` an annotation is a string: the type it
    names in the module that wrote it. A name that module cannot see stays a string: it is a
    parameter a stacked `options_from` fills (typer never reads it)."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, namespace)
    except NameError:
        return annotation


def _flags(name: str, option: CliOption, override: str | None) -> tuple[str, ...]:
    if override is not None:
        return (override,)
    return option.flags or ("--" + name.replace("_", "-"),)


def comma_list(text: str) -> tuple[str, ...]:
    """`gsm8k, humaneval,` -> ("gsm8k", "humaneval"); '' -> ()."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def comma_text(values: Iterable[str]) -> str:
    return ",".join(values)
