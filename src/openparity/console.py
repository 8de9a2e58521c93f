"""Terminal output shared by every command: Rich consoles and the one-line error format."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
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
            TextColumn(
                "{task.description}",
                table_column=TableColumn(no_wrap=True, overflow="ellipsis", max_width=label_width),
            ),
            BarColumn(bar_width=None if err.width > 120 else 12, table_column=whole()),
            MofNCompleteColumn(table_column=whole(min_width=9)),
            TimeElapsedColumn(table_column=whole(min_width=7)),
            TextColumn("eta", table_column=whole()),
            TimeRemainingColumn(table_column=whole(min_width=7)),
            TextColumn(
                "{task.fields[note]}", table_column=TableColumn(no_wrap=True, overflow="ellipsis")
            ),
            console=err,
            transient=False,
        )
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
    """Print `rows` (plain strings, no markup) so every number stays whole on one line. Too
    wide for the terminal: first each estimate's interval goes under its value ("35.0" over
    "[20.6, 51.7]") and long headers wrap at spaces, then optional columns are dropped,
    rightmost first, with a note."""
    from rich.table import Table
    from rich.text import Text

    console = console or out
    cells = [[str(cell) for cell in row] for row in rows]
    keep = list(range(len(columns)))
    compact = _narrowest(columns, cells, keep, compact=False) > console.width
    if compact:
        cells = [_stacked(columns, row) for row in cells]
    dropped: list[int] = []
    while compact:
        fits = _narrowest(columns, cells, keep, compact=True) <= console.width
        optional = [i for i in keep if columns[i].optional]
        if fits or not optional:
            break
        keep.remove(optional[-1])
        dropped.append(optional[-1])
    for i in reversed(dropped[:-1]):  # a column dropped early may fit beside a wider one's gap
        if _narrowest(columns, cells, sorted([*keep, i]), compact=True) <= console.width:
            keep = sorted([*keep, i])
    fits = _narrowest(columns, cells, keep, compact) <= console.width
    widths = _allocate(columns, cells, keep, compact, console.width) if fits else {}
    table = Table(title=title, title_justify="left")
    for i in keep:
        col = columns[i]
        header = _header(col, [row[i] for row in cells]) if compact else col.header
        table.add_column(  # too narrow even so: long identifiers fold, numbers stay whole
            header,
            no_wrap=col.numeric or (col.identifier and fits),
            overflow="fold",
            justify="right" if col.numeric else "left",
            width=widths.get(i),
        )
    for row in cells:
        table.add_row(*(Text(row[i]) for i in keep))
    console.print(table)
    left_out = [columns[i].header for i in range(len(columns)) if i not in keep]
    if left_out:
        console.print(
            f"[dim]left out at this width: {', '.join(left_out)} (widen the terminal or use"
            " --json)[/]"
        )


def print_rows(
    rows: Sequence[Mapping[str, str]],
    *,
    title: str | None = None,
    text: Collection[str] = (),
    identifiers: Collection[str] = (),
    optional: Collection[str] = (),
) -> None:
    """`print_table` for rows as dicts (the same dicts the JSON, Markdown and HTML forms
    use): every column is a number unless named as text or an identifier."""
    if not rows:
        return
    headers = list(rows[0])
    columns = [
        Column(
            h,
            numeric=h not in text and h not in identifiers,
            optional=h in optional,
            identifier=h in identifiers,
        )
        for h in headers
    ]
    print_table(columns, [[str(r[h]) for h in headers] for r in rows], title=title)


def _stacked(columns: Sequence[Column], row: list[str]) -> list[str]:
    """A numeric cell "value [low, high]" as two lines, value over interval."""
    return [
        cell.replace(" [", "\n[", 1) if col.numeric else cell
        for col, cell in zip(columns, row, strict=True)
    ]


def _header(column: Column, cells: list[str]) -> str:
    """A whole column's header wrapped at spaces to the width of its widest cell."""
    import textwrap

    from rich.cells import cell_len

    if not column.whole:
        return column.header
    width = max((cell_len(line) for c in cells for line in c.splitlines()), default=1)
    return textwrap.fill(column.header, width=max(width, 1), break_long_words=False)


def _narrowest(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], keep: list[int], compact: bool
) -> int:
    """The table's width with numbers whole and text folded at its longest word; compact:
    whole columns' headers wrap at spaces too."""
    cells = [[str(cell) for cell in row] for row in rows]
    padded = [_need(columns[i], [row[i] for row in cells], compact) + 3 for i in keep]
    return sum(padded) + 1  # padding of 1 each side and one border per column, one closing


def _allocate(
    columns: Sequence[Column], cells: list[list[str]], keep: list[int], compact: bool, total: int
) -> dict[int, int]:
    """Column widths that keep every word whole: each column gets its narrowest, then the
    room left goes a character at a time to the text column furthest from its full width.
    Rich's own shrinking can cut a word in two even where the words fit."""
    from rich.cells import cell_len

    def full(i: int) -> int:
        lines = [line for row in cells for line in row[i].splitlines()]
        return max(cell_len(t) for t in [columns[i].header, *lines])

    widths = {i: _need(columns[i], [row[i] for row in cells], compact) for i in keep}
    wanted = {i: full(i) for i in keep}
    room = total - (sum(widths.values()) + 3 * len(keep) + 1)
    while room > 0:
        short = {i: wanted[i] - widths[i] for i in keep if wanted[i] > widths[i]}
        if not short:
            break
        widest_gap = max(short, key=lambda i: short[i])
        widths[widest_gap] += 1
        room -= 1
    return widths


def _need(column: Column, cells: list[str], compact: bool) -> int:
    """The narrowest a column can be: whole numbers and identifiers, text at its longest word."""
    from rich.cells import cell_len

    def longest_word(text: str) -> int:
        return max((cell_len(w) for w in text.split()), default=1)

    if not column.whole:
        return max(longest_word(c) for c in [column.header, *cells])
    header = longest_word(column.header) if compact else cell_len(column.header)
    return max([header, *(cell_len(line) for c in cells for line in c.splitlines())])


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
