"""A forecast as terminal tables, JSON, or a self-contained HTML page (convergence plot and
tornado chart)."""

from __future__ import annotations

import json
from typing import Any

from openparity import htmlpage
from openparity.forecast.montecarlo import Forecast


def summary_rows(f: Forecast) -> list[dict[str, str]]:
    low, high = f.ci95
    return [
        {
            "scenario": f.scenario,
            "horizon": f.horizon or "-",
            "P(parity)": f"{f.probability * 100:.1f}%",
            "MC std. error": f"{f.standard_error * 100:.2f} pts",
            "95% CI": f"[{low * 100:.1f}, {high * 100:.1f}]",
            "draws": f"{f.draws:,} ({f.sampling}, seed {f.seed})",
        }
    ]


def tornado_rows(f: Forecast) -> list[dict[str, str]]:
    return [
        {
            "factor": b.factor,
            "factor against (p10)": f"{b.low * 100:.1f}%",
            "factor for (p90)": f"{b.high * 100:.1f}%",
            "swing": f"{b.swing * 100:.1f} pts",
        }
        for b in f.tornado
    ]


def sobol_rows(f: Forecast) -> list[dict[str, str]]:
    return [
        {"input": s.input, "first order": f"{s.first_order:.3f}", "total": f"{s.total:.3f}"}
        for s in sorted(f.sobol, key=lambda s: s.total, reverse=True)
    ]


def notes(f: Forecast) -> list[str]:
    out = [
        "The probability is only as good as the scenario's assumptions: every distribution,"
        " weight and correlation is an input you can change."
    ]
    if f.correlated and f.sobol:
        out.append(
            "Sobol indices treat the inputs as independent (they are not defined for correlated"
            " inputs); the tornado keeps the correlations."
        )
    if f.sampling != "mc":
        out.append(
            f"{f.sampling} sampling: the standard error shown is the plain Monte Carlo formula,"
            " which overstates the error of stratified / quasi-random draws."
        )
    return out


def to_dict(f: Forecast) -> dict[str, Any]:
    low, high = f.ci95
    return {
        "scenario": f.scenario,
        "horizon": f.horizon,
        "probability": f.probability,
        "standard_error": f.standard_error,
        "ci95": [low, high],
        "draws": f.draws,
        "sampling": f.sampling,
        "seed": f.seed,
        "tornado": [
            {"factor": b.factor, "p10": b.low, "p90": b.high, "swing": b.swing} for b in f.tornado
        ],
        "sobol": [
            {"input": s.input, "first_order": s.first_order, "total": s.total} for s in f.sobol
        ],
        "convergence": [{"draws": n, "estimate": p, "se": se} for n, p, se in f.convergence],
        "notes": notes(f),
    }


def to_json(f: Forecast) -> str:
    return json.dumps(to_dict(f), indent=2, ensure_ascii=False)


def render_terminal(f: Forecast) -> None:
    from rich.markup import escape

    from openparity.console import out, print_rows

    tornado_title = "Tornado (one factor pinned against / for parity, the rest drawn)"
    print_rows(
        summary_rows(f),
        title="Forecast",
        identifiers={"scenario"},
        text={"draws"},
        optional={"draws"},
    )
    print_rows(tornado_rows(f), title=tornado_title, identifiers={"factor"})
    print_rows(sobol_rows(f), title="Sobol sensitivity indices", identifiers={"input"})
    for note in notes(f):
        out.print(f"[yellow]note:[/] {escape(note)}")


def to_html(f: Forecast) -> str:
    plt = htmlpage.pyplot()
    n, estimate, se = zip(*f.convergence, strict=True)
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    low = [p - 1.96 * s for p, s in zip(estimate, se, strict=True)]
    high = [p + 1.96 * s for p, s in zip(estimate, se, strict=True)]
    ax.fill_between(n, low, high, alpha=0.25, label="95% band")
    ax.plot(n, estimate, label="estimate")
    ax.set_xscale("log")
    ax.set_xlabel("draws")
    ax.set_ylabel("P(parity)")
    ax.legend(loc="lower right")
    convergence = htmlpage.svg(fig)
    sections = [
        ("Forecast", htmlpage.table(summary_rows(f))),
        ("Notes", htmlpage.bullet_list(notes(f))),
        (
            "Convergence",
            htmlpage.figure(convergence, "Estimate vs draws, 95% band.", "convergence"),
        ),
    ]
    if f.tornado:
        bars = list(reversed(f.tornado))
        fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.35 * len(bars)))
        for y, b in enumerate(bars):
            ax.barh(y, b.high - f.probability, left=f.probability, color="#2ca02c")
            ax.barh(y, b.low - f.probability, left=f.probability, color="#d62728")
        ax.axvline(f.probability, color="black", linewidth=0.8)
        ax.set_yticks(range(len(bars)), [b.factor for b in bars])
        ax.set_xlabel("P(parity) with one factor against (red) / for (green) parity")
        caption = "Tornado: which assumptions move the answer most."
        sections.append(("Sensitivity", htmlpage.figure(htmlpage.svg(fig), caption, "tornado")))
        sections.append(("Tornado", htmlpage.table(tornado_rows(f))))
    if f.sobol:
        sections.append(("Sobol indices", htmlpage.table(sobol_rows(f))))
    return htmlpage.page(f"openparity forecast: {f.scenario}", sections)
