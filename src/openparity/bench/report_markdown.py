"""The gap report as Markdown: the headlines, then the gap, verification and movement tables."""

from __future__ import annotations

from openparity.bench.gap_report import GapReport
from openparity.bench.headline import headlines
from openparity.bench.report import gap_rows, movement_rows, verification_rows


def _md_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "_no tasks_\n"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r[h].replace("|", "\\|") for h in head) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_markdown(report: GapReport) -> str:
    lines = headlines(report.comparisons, report.movements)
    parts = [
        "# openparity gap report\n",
        *(["\n## At a glance\n\n"] if lines else []),
        *[f"- **{h.sentence}** ({h.numbers})\n" for h in lines],
        "\n## Gap (scores in points, 95% CI)\n",
        _md_table(gap_rows(report)),
        "\n## Verification\n",
        _md_table(verification_rows(report)),
    ]
    if report.movements:
        parts += ["\n## What training moved (trained − base, paired)\n"]
        parts += [_md_table(movement_rows(report))]
    if report.notes:
        parts += ["\n## Notes\n"] + [f"- {n}\n" for n in report.notes]
    return "".join(parts)
