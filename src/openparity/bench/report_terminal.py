"""The gap report on the terminal: headlines, then tables that fit the terminal's width (optional
columns dropped rightmost first), each verdict's reason and the notes."""

from __future__ import annotations

from openparity.bench.gap_report import GapReport
from openparity.bench.headline import headlines
from openparity.bench.report import gap_rows, movement_rows, verification_rows

_TEXT_COLUMNS = {"task", "metric", "verdict"}
# Dropped, rightmost first, on a narrow terminal. The trained and base scores are also in the
# headlines above the tables (and the trained one in the gap table), so they go before the
# change and the gap before → after.
_OPTIONAL_COLUMNS = {"metric", "gap ratio", "margin", "p diff", "provable", "p (Holm)", "n"}
_OPTIONAL_COLUMNS |= {"base", "trained"}


def render_terminal(report: GapReport) -> None:
    from rich.markup import escape

    from openparity.console import out, print_rows

    for h in headlines(report.comparisons, report.movements):
        out.print(f"[bold]{escape(h.sentence)}[/]")
        out.print(f"  {escape(h.numbers)}", style="dim")
    tables = [
        ("Gap (points, 95% CI)", gap_rows(report)),
        ("Verification", verification_rows(report)),
    ]
    if report.movements:
        tables.append(("What training moved (trained − base, paired)", movement_rows(report)))
    for title, rows in tables:
        shown = [{h: v for h, v in r.items() if h != "why"} for r in rows]  # "why" comes below
        print_rows(shown, title=title, text=_TEXT_COLUMNS, optional=_OPTIONAL_COLUMNS)
    for c in report.comparisons:
        out.print(
            f"[bold]{escape(c.task)}[/]: {escape(c.verdict.word)}: {escape(c.verdict.explanation)}"
        )
    for m in report.movements:
        out.print(
            f"[bold]{escape(m.task)}[/] after training: {escape(m.verdict)}:"
            f" {escape(m.change.verdict.explanation)}"
        )
    for note in report.notes:
        out.print(f"[yellow]note:[/] {escape(note)}")
