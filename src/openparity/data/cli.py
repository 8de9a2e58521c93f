"""CLI of the data tools: `openparity data clean`."""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(
    help="Synthetic training data: clean, decontaminate, account for every record."
)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


@data_app.command("generate")
def generate_command(
    seeds: Path | None = typer.Argument(
        None, help="Seed prompts (JSONL: prompt, or messages); magpie needs none."
    ),
    teacher: str = typer.Option(..., "--teacher", help="Teacher model spec or models.yaml name."),
    out: Path = typer.Option(..., "--out", "-o", help="Output JSONL."),
    method: str = typer.Option(
        "seeds", "--method", help="seeds, self-instruct, evol, pairs or magpie."
    ),
    student: str | None = typer.Option(None, "--student", help="pairs: the model to prefer over."),
    count: int = typer.Option(
        100, "--count", min=1, help="self-instruct / evol / magpie: records."
    ),
    max_tokens: int = typer.Option(512, "--max-tokens", min=1),
    temperature: float = typer.Option(0.7, "--temperature", min=0.0),
    concurrency: int = typer.Option(8, "--concurrency", min=1),
    seed: int = typer.Option(0, "--seed"),
    store: Path | None = typer.Option(None, "--store", help="Response cache (run store) file."),
    models_file: Path | None = typer.Option(None, "--models", help="models.yaml to read."),
    resume: bool = typer.Option(False, "--resume", help="Continue into an existing output."),
) -> None:
    """A teacher model writes training records, each with its provenance."""
    import asyncio

    from openparity.bench.store import DEFAULT_STORE, RunStore
    from openparity.console import ProgressBars
    from openparity.console import out as console
    from openparity.data.generate import GenerateSettings, generate, load_seeds
    from openparity.models import open_model
    from openparity.models.cache import CachedModel

    settings = GenerateSettings(
        method=method,
        count=count,
        max_tokens=max_tokens,
        temperature=temperature,
        concurrency=concurrency,
        seed=seed,
    )
    if seeds is None and method != "magpie":
        raise typer.BadParameter("seed prompts are needed (only magpie runs without)")
    prompts = load_seeds(seeds) if seeds is not None else []

    goal = len(prompts) if method in ("seeds", "pairs") else count

    async def go() -> int:
        with RunStore(store or DEFAULT_STORE) as runs, ProgressBars() as bar:
            update = bar(f"{method} · {teacher}")
            teacher_model = CachedModel(open_model(teacher, models_file=models_file), runs)
            student_model = (
                CachedModel(open_model(student, models_file=models_file), runs) if student else None
            )
            try:
                return await generate(
                    teacher_model,
                    prompts,
                    out,
                    settings,
                    student=student_model,
                    resume=resume,
                    progress=lambda n: update(n, goal),
                )
            finally:
                await teacher_model.aclose()
                if student_model is not None:
                    await student_model.aclose()

    total = asyncio.run(go())
    console.print(f"{out}: {total} records ({method}, teacher {teacher})")


@data_app.command("publish")
def publish_command(
    kept: Path = typer.Argument(
        ..., help="A kept.jsonl from `data clean` (its report.json next to it)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset directory to write."),
    fmt: str = typer.Option(
        "sft", "--format", help="sft (messages) or dpo (prompt/chosen/rejected)."
    ),
    name: str = typer.Option("openparity-synthetic", "--name", help="Dataset name for the card."),
) -> None:
    """Write data/train.{jsonl,parquet} and a dataset card that `datasets.load_dataset` reads."""
    from openparity.console import out as console
    from openparity.data.publish import publish

    rows = publish(kept, out, fmt=fmt, name=name)
    console.print(f"{out}: {rows:,} rows ({fmt}); datasets.load_dataset({str(out)!r})")


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
    near_index: str = typer.Option(
        "memory", "--near-index", help="memory, or disk (flat memory for millions of records)."
    ),
    benchmarks: str = typer.Option(
        "gsm8k,mmlu,humaneval,arc-challenge,mbpp",
        "--benchmarks",
        help="Harness tasks to decontaminate against (comma-separated; empty: none).",
    ),
    scripts: str = typer.Option(
        "", "--scripts", help="Allowed scripts, e.g. Latin,Han (any if empty)."
    ),
    min_words: int = typer.Option(3, "--min-words", min=1),
    min_distinct_2: float | None = typer.Option(None, "--min-distinct-2", help="Fail below it."),
    max_self_bleu: float | None = typer.Option(None, "--max-self-bleu", help="Fail above it."),
    max_skew: float | None = typer.Option(
        None, "--max-skew", help="Fail when a group's share is this far from its reference."
    ),
    embedding_coverage: int = typer.Option(
        0, "--embedding-coverage", min=0, help="Embed this many kept records (MiniLM); 0: off."
    ),
    min_coverage: float | None = typer.Option(
        None, "--min-coverage", help="Fail when embedding coverage is below it."
    ),
    toxicity_classifier: str | None = typer.Option(
        None, "--toxicity-classifier", help="FILE.py:FUNCTION returning a score in [0, 1]."
    ),
    executor: str = typer.Option(
        "local", "--executor", help="local, or ray (the stateless steps on Ray Data)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Filter, decontaminate, scrub PII and deduplicate; every input line is accounted for."""
    from openparity.console import err, print_json
    from openparity.data.pipeline import CleanSettings, clean
    from openparity.data.review import ReviewThresholds

    settings = CleanSettings(
        near_threshold=near_threshold or None,
        num_perm=num_perm,
        near_index=near_index,
        benchmarks=tuple(b for b in benchmarks.split(",") if b),
        scripts=tuple(s for s in scripts.split(",") if s),
        min_words=min_words,
        toxicity_classifier=_classifier(toxicity_classifier),
        review=ReviewThresholds(min_distinct_2, max_self_bleu, max_skew, min_coverage=min_coverage),
        embedding_sample=embedding_coverage,
        executor=executor,
    )

    def progress(report) -> None:
        err.print(
            f"{report.lines:,} lines: {report.kept:,} kept, {report.rejected:,} rejected,"
            f" {report.quarantined:,} quarantined"
        )

    report = clean(inputs, out, settings, resume=resume, progress=None if as_json else progress)
    if as_json:
        print_json(report.to_dict())
    else:
        _render(report, out)
    if report.review and not report.review["passed"]:
        err.print("error: the ethics review failed: " + "; ".join(report.review["failures"]))
        raise typer.Exit(1)


def _classifier(spec: str | None):
    if not spec:
        return None
    from openparity.errors import OpenparityError
    from openparity.usercode import load_function

    file, _, function = spec.rpartition(":")
    if not file:
        raise OpenparityError(f"--toxicity-classifier {spec!r}", hint="give FILE.py:FUNCTION")
    return load_function(Path(file), function, OpenparityError, what="toxicity classifier")


def _render(report, out: Path) -> None:
    from rich.markup import escape

    from openparity.console import out as console

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
        console.print(
            f"  near-dup: Jaccard >= {nd['threshold']}, {nd['num_perm']} permutations ="
            f" {nd['bands']} bands x {nd['rows']} rows; a pair at the threshold is"
            f" caught with probability {nd['catch_rate_at_threshold']:.2f}"
        )
    r = report.review
    console.print(
        f"  review: distinct-1 {r['distinct_1']:.3f}, distinct-2 {r['distinct_2']:.3f},"
        f" self-BLEU {r['self_bleu'] if r['self_bleu'] is None else round(r['self_bleu'], 3)}"
        f" (sample {r['sample']}); representation skew "
        + ", ".join(f"{axis} {a['skew']:.2f}" for axis, a in r["representation"].items())
    )
    for note in r.get("not_judged", []):
        console.print(f"  [yellow]note:[/] {escape(note)}")
    if r.get("embedding"):
        e = r["embedding"]
        console.print(
            f"  embedding coverage {e['coverage']:.2f} ({e['effective_clusters']:.1f} effective"
            f" of {e['clusters']} clusters, sample {e['sample']}),"
            f" mean cosine {e['mean_cosine']:.2f}"
        )
    console.print(f"outputs in {out}: kept.jsonl, rejected.jsonl, quarantine.jsonl, report.json")
