"""Terminal output shared by every command: Rich consoles and the one-line error format."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from openparity.jsonsafe import finite

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, non-ASCII text kept as is; a NaN or an
    infinity (no estimate) is written as null, never as the non-JSON `NaN`."""
    sys.stdout.write(json.dumps(finite(data), ensure_ascii=False, indent=2, default=str) + "\n")


def print_error(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True, markup=True)


class ProgressBars:
    """Rich progress bars with an ETA on stderr; `bar(label)` returns an update(done, total,
    note="") callback for one bar."""

    def __enter__(self) -> Callable[[str], Callable[..., None]]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.table import Column as TableColumn

        def whole(**options: Any) -> TableColumn:  # never cut a count or a time
            return TableColumn(no_wrap=True, **options)

        # at 80 columns the counts and times stay whole: the label gives way (ellipsis), then
        # the bar; the note goes last
        label_width = max(16, err.width - 52)
        self.progress = Progress(
            TextColumn("{task.description}", table_column=TableColumn(
                no_wrap=True, overflow="ellipsis", max_width=label_width)),
            BarColumn(bar_width=None if err.width > 120 else 12, table_column=whole()),
            MofNCompleteColumn(table_column=whole(min_width=9)),
            TimeElapsedColumn(table_column=whole(min_width=7)),
            TextColumn("eta", table_column=whole()),
            TimeRemainingColumn(table_column=whole(min_width=7)),
            TextColumn("{task.fields[note]}", table_column=TableColumn(
                no_wrap=True, overflow="ellipsis")),
            console=err,
            transient=False,
        )  # fmt: skip
        self.progress.start()
        return self._bar

    def _bar(self, label: str) -> Callable[..., None]:
        task_id = self.progress.add_task(label, total=None, note="")

        def update(done: int, total: int | None, note: str = "") -> None:
            self.progress.update(task_id, completed=done, total=total, note=note)

        return update

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()


@dataclass(frozen=True)
class Column:
    """A table column. Numbers (right-aligned) and identifiers are never wrapped or cut; text
    folds at word boundaries; optional columns are dropped, rightmost first, when the
    terminal is too narrow."""

    header: str
    numeric: bool = False
    optional: bool = False
    identifier: bool = False

    @property
    def whole(self) -> bool:
        return self.numeric or self.identifier


def print_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    console: Console | None = None,
) -> None:
    """Print `rows` (plain strings, no markup) so every number stays whole on one line."""
    from rich.table import Table
    from rich.text import Text

    console = console or out
    keep = list(range(len(columns)))
    while True:
        optional = [i for i in keep if columns[i].optional]
        fits = _narrowest(columns, rows, keep) <= console.width
        if fits or not optional:
            break
        keep.remove(optional[-1])
    table = Table(title=title, title_justify="left")
    for i in keep:
        col = columns[i]
        table.add_column(  # too narrow even so: long identifiers fold, numbers stay whole
            col.header, no_wrap=col.numeric or (col.identifier and fits), overflow="fold",
            justify="right" if col.numeric else "left",
        )  # fmt: skip
    for row in rows:
        table.add_row(*(Text(str(row[i])) for i in keep))
    console.print(table)
    dropped = [columns[i].header for i in range(len(columns)) if i not in keep]
    if dropped:
        console.print(
            f"[dim]left out at this width: {', '.join(dropped)} (widen the terminal or use"
            " --json)[/]"
        )


def _narrowest(columns: Sequence[Column], rows: Sequence[Sequence[str]], keep: list[int]) -> int:
    """The table's width with numbers whole and text folded at its longest word."""
    from rich.cells import cell_len

    def need(i: int) -> int:
        cells = [columns[i].header, *(str(row[i]) for row in rows)]
        if columns[i].whole:
            return max(cell_len(c) for c in cells)
        return max((cell_len(w) for c in cells for w in c.split()), default=1)

    return sum(need(i) + 3 for i in keep) + 1  # padding of 1 each side + one border each


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
