"""CLI of the data tools: `openparity data clean`."""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(
    help="Synthetic training data: clean, decontaminate, account for every record."
)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


@data_app.command("clean")
def clean_command(
    inputs: list[Path] = typer.Argument(
        ..., help="JSONL files (messages, prompt+response or text)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory."),
    near_threshold: float = typer.Option(
        0.8, "--near-threshold", help="MinHash Jaccard threshold."
    ),
    num_perm: int = typer.Option(128, "--num-perm", min=16, help="MinHash permutations."),
    benchmarks: str = typer.Option(
        "gsm8k,mmlu,humaneval,arc-challenge,mbpp",
        "--benchmarks",
        help="Harness tasks to decontaminate against (comma-separated; empty: none).",
    ),
    scripts: str = typer.Option(
        "", "--scripts", help="Allowed scripts, e.g. Latin,Han (any if empty)."
    ),
    min_words: int = typer.Option(3, "--min-words", min=1),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Filter, decontaminate, scrub PII and deduplicate; every input line is accounted for."""
    from openparity.console import err, print_json
    from openparity.console import out as console
    from openparity.data.pipeline import CleanSettings, clean

    settings = CleanSettings(
        near_threshold=near_threshold or None,
        num_perm=num_perm,
        benchmarks=tuple(b for b in benchmarks.split(",") if b),
        scripts=tuple(s for s in scripts.split(",") if s),
        min_words=min_words,
    )

    def progress(report) -> None:
        err.print(f"{report.lines:,} lines: {report.kept:,} kept, {report.rejected:,} rejected,"
                  f" {report.quarantined:,} quarantined")  # fmt: skip

    report = clean(inputs, out, settings, resume=resume, progress=None if as_json else progress)
    if as_json:
        print_json(report.to_dict())
        return
    console.print(
        f"{report.lines:,} lines = {report.kept:,} kept + {report.rejected:,} rejected"
        f" + {report.quarantined:,} quarantined + {report.blank:,} blank"
        f" ({report.lines / max(report.seconds, 1e-9):,.0f} lines/s)"
    )
    for reason, count in sorted(report.reasons.items(), key=lambda kv: -kv[1]):
        console.print(f"  rejected {reason}: {count:,}")
    if report.pii_replaced:
        console.print(f"  PII replaced: {report.pii_replaced}")
    if report.contaminated_items:
        console.print(f"  benchmark items hit: {len(report.contaminated_items)}")
    nd = report.near_dedup
    if nd:
        console.print(f"  near-dup: Jaccard >= {nd['threshold']}, {nd['num_perm']} permutations ="
                      f" {nd['bands']} bands x {nd['rows']} rows")  # fmt: skip
    console.print(f"outputs in {out}: kept.jsonl, rejected.jsonl, quarantine.jsonl, report.json")
