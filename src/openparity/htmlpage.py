"""The one way openparity writes a report page: self-contained HTML (inline CSS and SVG plots,
no scripts, nothing fetched), so it opens offline and can be mailed as one file."""

from __future__ import annotations

import datetime as dt
import html
import io
import time
from collections.abc import Sequence
from typing import Any

from openparity import __version__

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; font-size: .9rem; }
th { background: #f3f3f3; }
figure { margin: 1rem 0; } figcaption { color: #555; font-size: .85rem; }
.lead { font-size: 1.05rem; color: #333; }
.callout { border-left: .4rem solid #999; background: #f7f7f7; padding: .4rem .9rem;
  margin: .6rem 0; }
.callout p { margin: .25rem 0; }
.callout .sentence { font-size: 1.25rem; font-weight: 600; }
.callout .numbers { font-variant-numeric: tabular-nums; }
.callout .why { color: #555; font-size: .9rem; }
.callout.bad { border-color: #c62828; background: #fdecea; }
.callout.good { border-color: #2e7d32; background: #edf7ed; }
.callout.unsure { border-color: #ef8f00; background: #fff4e5; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
.figures svg { max-width: 100%; height: auto; }
"""


def table(rows: Sequence[dict[str, str]], empty: str = "nothing to show") -> str:
    if not rows:
        return f"<p>{html.escape(empty)}</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def bullet_list(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def figure(svg: str, caption: str, figure_id: str) -> str:
    return (
        f'<figure id="{html.escape(figure_id)}">{svg}'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def svg(fig: Any) -> str:
    """A matplotlib figure as inline SVG (the figure is closed afterwards)."""
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def page(
    title: str,
    sections: Sequence[tuple[str, str]],
    created: float | None = None,
    lead: str = "",
) -> str:
    """A complete page: a title, a lead line (what the page is about), then (heading, HTML
    body) sections in order."""
    stamp = dt.datetime.fromtimestamp(created or time.time(), dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections)
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        + (f'<p class="lead">{html.escape(lead)}</p>' if lead else "")
        + f"<p>openparity {__version__} · {stamp}</p>"
        f"{body}</body></html>\n"
    )
