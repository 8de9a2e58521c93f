"""The cost comparison as terminal tables, JSON, or an HTML page with the cost-split chart."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from openparity import htmlpage
from openparity.forecast.cost import CostReport, SelfHosting, Traffic


@dataclass(frozen=True)
class CostStudy:
    """A cost report with the inputs it rests on."""

    closed_model: str
    price_source: str
    hosting: SelfHosting
    traffic: Traffic
    report: CostReport
    open_share_source: str = "assumed"


def rows(s: CostStudy) -> list[dict[str, str]]:
    r = s.report
    return [
        {
            "option": f"closed API ({s.closed_model})",
            "monthly": f"${r.api_monthly_usd:,.0f}",
            "$ / Mtok": f"{r.api_usd_per_mtok:.3f}",
        },
        {
            "option": f"self-hosted ({s.hosting.gpus} GPU)",
            "monthly": f"${r.self_hosted_monthly_usd:,.0f}",
            "$ / Mtok": f"{r.self_hosted_usd_per_mtok:.3f}",
        },
        {
            "option": f"hybrid ({r.hybrid_open_share * 100:.0f}% open first,"
            f" {s.open_share_source})",
            "monthly": f"${r.hybrid_monthly_usd:,.0f}",
            "$ / Mtok": "-",
        },
    ]


def notes(s: CostStudy) -> list[str]:
    r, h, t = s.report, s.hosting, s.traffic
    out = [
        f"Traffic: {t.monthly_requests:,.0f} requests/month of {t.prompt_tokens:,.0f} prompt +"
        f" {t.completion_tokens:,.0f} answer tokens each (assumed: set --prompt-tokens and"
        " --completion-tokens to your traffic's averages).",
        f"API price: {s.price_source}.",
        f"Self-hosting: {h.gpus} GPU x ${h.gpu_hourly_usd}/h, {h.tokens_per_second:g} output"
        f" tok/s, {h.utilisation * 100:.0f}% utilisation, {h.ops_overhead * 100:.0f}% ops"
        f" overhead; this traffic uses {r.capacity_used * 100:.1f}% of its capacity.",
        f"Hybrid saves {r.saving_vs_api * 100:.1f}% against the API alone.",
    ]
    capacity_requests = (
        h.monthly_capacity_tokens / t.completion_tokens if t.completion_tokens else 0
    )
    if r.break_even_monthly_requests > capacity_requests:
        out.append(
            "Self-hosting never pays off with this deployment: its break-even"
            f" ({r.break_even_monthly_requests:,.0f} requests/month) is above its capacity"
            f" ({capacity_requests:,.0f})."
        )
    else:
        out.append(
            f"Break-even: {r.break_even_monthly_requests:,.0f} requests/month (the traffic is"
            f" {t.monthly_requests:,.0f})."
        )
    return out


def to_dict(s: CostStudy) -> dict[str, Any]:
    return {
        "closed_model": s.closed_model,
        "price_source": s.price_source,
        "hosting": asdict(s.hosting),
        "traffic": asdict(s.traffic),
        **asdict(s.report),
        "hybrid_open_share_source": s.open_share_source,
        "notes": notes(s),
    }


def to_json(s: CostStudy) -> str:
    return json.dumps(to_dict(s), indent=2)


def render_terminal(s: CostStudy) -> None:
    from rich.markup import escape

    from openparity.console import out, print_rows

    print_rows(rows(s), title="Monthly cost", text={"option"})
    for note in notes(s):
        out.print(f"[yellow]note:[/] {escape(note)}")


def to_html(s: CostStudy) -> str:
    r = s.report
    plt = htmlpage.pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    labels = ["closed API", "self-hosted", "hybrid"]
    fixed = [0.0, r.self_hosted_monthly_usd, r.self_hosted_monthly_usd]
    api = [r.api_monthly_usd, 0.0, r.hybrid_monthly_usd - r.self_hosted_monthly_usd]
    ax.barh(labels, fixed, color="#2ca02c", label="open (GPUs + ops)")
    ax.barh(labels, api, left=fixed, color="#d62728", label="closed API")
    ax.set_xlabel("USD per month")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=2, frameon=False)
    chart = htmlpage.figure(htmlpage.svg(fig), "Cost split: open vs closed spend.", "cost-split")
    return htmlpage.page(
        "openparity cost",
        [
            ("Monthly cost", htmlpage.table(rows(s))),
            ("Notes", htmlpage.bullet_list(notes(s))),
            ("Cost split", chart),
        ],
    )
