"""Technology advice: the seed's selection matrix (start-up / mid-size / large enterprise ->
fine-tune an open model / open model on own accelerators / hybrid open-closed) as transparent
rules. Every recommendation lists the inputs it rests on and its risks; measured parity
verdicts (an `openparity gap --format json` report) turn into risks or support."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from openparity.errors import OpenparityError

Size = Literal["startup", "midsize", "enterprise"]
Compliance = Literal["none", "data-residency", "air-gapped"]


@dataclass(frozen=True)
class Situation:
    size: Size
    monthly_requests: float
    ml_engineers: int
    compliance: Compliance = "none"
    break_even_requests: float | None = None  # from `openparity cost`, if known
    verdicts: dict[str, str] = field(default_factory=dict)  # task -> verdict word


@dataclass(frozen=True)
class Advice:
    recommendation: str
    why: list[str]
    risks: list[str]


def load_verdicts(gap_report: Path) -> dict[str, str]:
    """Task -> verdict from a gap report written with --format json."""
    try:
        data = json.loads(Path(gap_report).read_text(encoding="utf-8"))
        return {t["task"]: t["verdict"] for t in data["tasks"]}
    except FileNotFoundError:
        raise OpenparityError(f"gap report not found: {gap_report}") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise OpenparityError(
            f"{gap_report} is not a gap report", hint="write one with openparity gap --format json"
        ) from None


def load_break_even(cost_report: Path) -> float:
    """The break-even (requests/month) from a cost report written with --format json."""
    try:
        data = json.loads(Path(cost_report).read_text(encoding="utf-8"))
        return float(data["break_even_monthly_requests"])
    except FileNotFoundError:
        raise OpenparityError(f"cost report not found: {cost_report}") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise OpenparityError(
            f"{cost_report} is not a cost report",
            hint="write one with openparity cost --format json --output cost.json",
        ) from None


def advise(s: Situation) -> Advice:
    why = [
        f"size: {s.size}",
        f"ML engineers: {s.ml_engineers}",
        f"compliance: {s.compliance}",
        f"volume: {s.monthly_requests:,.0f} requests/month",
    ]
    risks = _parity_risks(s.verdicts)
    at_parity = [t for t, v in s.verdicts.items() if v in ("equivalent", "open better")]
    if s.verdicts:
        why.append(f"parity shown on {len(at_parity)} of {len(s.verdicts)} measured tasks")
    above_break_even = (
        s.break_even_requests is not None and s.monthly_requests >= s.break_even_requests
    )
    if s.break_even_requests is not None:
        side = "above" if above_break_even else "below"
        why.append(f"volume is {side} the self-hosting break-even ({s.break_even_requests:,.0f})")

    if s.compliance == "air-gapped":
        rec = "Open model on your own accelerators (a closed API is not an option when air-gapped)"
        risks.append("no closed fallback: quality gaps must be closed by fine-tuning or data")
    elif s.size == "startup" or s.ml_engineers < 2:
        rec = (
            "Fine-tune an open model and serve it from a managed open-model endpoint; keep the"
            " closed API as the gateway's fallback"
        )
        if s.ml_engineers < 2:
            risks.append("fewer than 2 ML engineers: operating GPUs yourself is a real burden")
    elif s.size == "midsize" and (above_break_even or s.compliance == "data-residency"):
        rec = "Open model on your own accelerators, closed API kept as fallback for hard cases"
        if not above_break_even:
            risks.append("data residency forces self-hosting below the cost break-even")
    else:
        rec = (
            "Hybrid: route open-first through the gateway where parity holds, closed model for"
            " the rest; re-measure quarterly"
        )
        if s.break_even_requests is not None and not above_break_even:
            risks.append("below break-even: reserved GPUs cost more than the API at this volume")
    if s.verdicts and not at_parity:
        risks.append("no task has shown parity yet: keep the closed model as the default")
        if s.compliance != "air-gapped":  # the headline follows the measurements
            rec = (
                "Keep the closed model as the default: no measured task has shown parity yet."
                f" Once one does: {rec[0].lower()}{rec[1:]}"
            )
    elif s.verdicts and len(at_parity) < len(s.verdicts):
        rec += f"; open-first only on the tasks at parity ({', '.join(sorted(at_parity))})"
    if not s.verdicts:
        risks.append("no measured parity: run openparity gap and pass its JSON with --gap-report")
    return Advice(rec, why, risks)


def _parity_risks(verdicts: dict[str, str]) -> list[str]:
    risks = []
    for task, verdict in verdicts.items():
        if verdict == "open worse":
            risks.append(f"{task}: the open model is measurably worse")
        elif verdict.startswith("inconclusive"):
            risks.append(f"{task}: parity not shown (underpowered or mixed results)")
    return risks
