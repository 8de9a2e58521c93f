"""Terminal output shared by every command: Rich consoles and the one-line error format."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, non-ASCII text kept as is."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def print_error(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True, markup=True)


def report_kind(fmt: str, output: Path | None, writers: Mapping[str, object]) -> str:
    """The format a report will be written in; raises before any work for a bad choice."""
    from openparity.errors import OpenparityError

    if fmt != "terminal" and fmt not in writers:
        known = ", ".join(["terminal", *writers])
        raise OpenparityError(f"unknown format {fmt!r}", hint=f"use one of: {known}")
    if output is None or fmt != "terminal":
        return fmt
    kind = output.suffix.lstrip(".").lower()
    if kind not in writers:
        raise OpenparityError(
            f"cannot tell the report format of {output}",
            hint=f"give the file a suffix among: {', '.join(writers)}, or pass --format",
        )
    return kind


def emit_report(
    report: Any,
    fmt: str,
    output: Path | None,
    writers: Mapping[str, Callable[[Any], str]],
    terminal: Callable[[Any], None],
) -> None:
    """Print `report` as `fmt` ("terminal" or a key of `writers`). With an output file, write
    it there atomically (the format from its suffix when `fmt` is "terminal") and still print
    the terminal view."""
    from openparity.atomic import write_atomic

    kind = report_kind(fmt, output, writers)
    if output is not None:
        write_atomic(output, writers[kind](report))
        err.print(f"report written to {output}")
    if fmt == "terminal":
        terminal(report)
    elif output is None:
        out.print(writers[fmt](report), markup=False, highlight=False, soft_wrap=True)
