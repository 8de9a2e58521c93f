"""CLI of the model layer: `openparity chat`, `openparity models list`, `models serve-local`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from openparity.console import out, print_json

models_app = typer.Typer(help="Model specs, models.yaml, and a local OpenAI-compatible server.")


def register(app: typer.Typer) -> None:
    app.command()(chat)
    app.add_typer(models_app, name="models")


def chat(
    model: str = typer.Argument(
        ..., help="Model spec or models.yaml name, e.g. local:smollm2-135m"
    ),
    prompt: str = typer.Argument(..., help="The user message."),
    system: str | None = typer.Option(None, "--system", help="System prompt."),
    max_tokens: int = typer.Option(256, "--max-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0),
    seed: int | None = typer.Option(None, "--seed"),
    models_file: Path | None = typer.Option(None, "--models", help="models.yaml to read."),
    as_json: bool = typer.Option(False, "--json", help="Print the completion as JSON."),
) -> None:
    """Send one prompt to a model and print the answer with its tokens, latency and cost."""
    from openparity.models import ChatRequest, open_model

    request = ChatRequest.from_prompt(
        prompt, system=system, max_tokens=max_tokens, temperature=temperature, seed=seed
    )

    async def run():
        async with open_model(model, models_file=models_file) as chat_model:
            return await chat_model.generate(request)

    completion = asyncio.run(run())
    if as_json:
        print_json(completion.to_dict())
        return
    out.print(completion.text, markup=False)
    cost = "unpriced" if completion.cost_usd is None else f"${completion.cost_usd:.6f}"
    out.print(
        f"[dim]{completion.model} · {completion.prompt_tokens} in / "
        f"{completion.completion_tokens} out · {completion.latency_s:.2f}s · {cost} · "
        f"finish: {completion.finish_reason}[/]"
    )


@models_app.command("list")
def list_models(
    models_file: Path | None = typer.Option(None, "--models", help="models.yaml to read."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Embedded local models, the models defined in models.yaml, and the hosted models with
    a built-in list price (its source and date)."""
    from openparity.models.catalog import load_catalog
    from openparity.models.embedded import EMBEDDED_MODELS
    from openparity.models.prices import BUILTIN_PRICES
    from openparity.models.spec import parse_spec

    catalog = load_catalog(models_file)
    specs = [parse_spec(f"local:{alias}") for alias in EMBEDDED_MODELS]
    specs += list(catalog.models.values())
    specs += [
        parse_spec(f"{'deepseek' if name.startswith('deepseek') else 'openai'}:{name}")
        for name in BUILTIN_PRICES
    ]
    rows = [
        {
            "name": s.name,
            "backend": s.backend,
            "model": s.model,
            "base_url": s.shown_url,
            "api_key_env": s.api_key_env,
            "price_in_per_mtok": s.price.input_per_mtok if s.price else None,
            "price_out_per_mtok": s.price.output_per_mtok if s.price else None,
            "price_source": s.price.source if s.price else None,
            "price_as_of": s.price.as_of if s.price else None,
            "max_concurrency": s.max_concurrency,
        }
        for s in specs
    ]
    if as_json:
        print_json({"models_file": str(catalog.path) if catalog.path else None, "models": rows})
        return
    from openparity.console import Column, print_table

    table = []
    for r in rows:
        price = (
            "-"
            if r["price_in_per_mtok"] is None
            else f"{r['price_in_per_mtok']:g} / {r['price_out_per_mtok']:g}"
        )
        where = r["model"] + (f" @ {r['base_url']}" if r["base_url"] else "")
        as_of = str(r["price_as_of"] or "-")
        table.append([r["name"], r["backend"], where, price, as_of, str(r["max_concurrency"])])
    columns = [
        Column("name"),
        Column("backend", optional=True),
        Column("model / endpoint"),
        Column("$ in/out per Mtok", numeric=True),
        Column("price as of", optional=True),
        Column("concurrency", numeric=True, optional=True),
    ]
    print_table(columns, table, title=f"models ({catalog.path or 'no models.yaml'})")


@models_app.command("serve-local")
def serve_local(
    model: str = typer.Argument("local:smollm2-135m", help="A local spec: alias or GGUF path."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (loopback by default)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    n_ctx: int | None = typer.Option(None, "--n-ctx", help="Context window in tokens."),
    logits_all: bool = typer.Option(
        False, "--logits-all", help="Keep all logits (needed for echo/prompt logprobs)."
    ),
) -> None:
    """Serve a local GGUF as an OpenAI-compatible HTTP server until Ctrl-C or SIGTERM."""
    import signal
    import sys

    from openparity.errors import OpenparityError
    from openparity.models.local_server import start_local_server

    # SIGTERM unwinds like Ctrl-C, so the `with` below stops the server process
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with start_local_server(
        model, host=host, port=port, n_ctx=n_ctx, logits_all=logits_all
    ) as server:
        out.print(f"serving [bold]{server.model}[/] at {server.base_url}")
        out.print(f"use it as: [bold]{server.spec}[/]   (Ctrl-C stops it)")
        try:
            code = server.process.wait()
        except KeyboardInterrupt:
            out.print("stopping")
            return
    raise OpenparityError(
        f"the llama.cpp server stopped on its own (exit status {code})",
        hint=f"see its log: {server.log_path}",
    )
