"""Hostile-program tests run twice: as this process's user and, when that is root, as the
user nobody through setpriv (the sandbox's user-namespace path)."""

import os
import shutil
from pathlib import Path

import pytest

from openparity.bench.sandbox import Judgement, Limits, Sandbox, SandboxOutcome, TrustedTests

SYSTEM_PYTHON = next(
    (Path(p) for p in ("/usr/bin/python3.11", "/usr/local/bin/python3.11") if Path(p).exists()),
    None,
)
SRC = Path(__file__).parents[2] / "src"


class Unprivileged:
    """The same Sandbox run by the user nobody (setpriv): the user-namespace path. `source` is
    a copy of the package that nobody can read (a checkout under /root is not readable)."""

    def __init__(self, source: Path, limits: Limits, expose: tuple[str, ...] = ()) -> None:
        self.source, self.limits, self.expose = source, limits, expose

    async def run(self, program: str) -> SandboxOutcome:
        return SandboxOutcome(**await self._as_nobody({"program": program}))

    async def judge(self, answer: str, tests: TrustedTests) -> Judgement:
        import dataclasses

        request = {"answer": answer, "tests": dataclasses.asdict(tests)}
        judged = await self._as_nobody(request)
        return Judgement(**{**judged, "answer": SandboxOutcome(**judged["answer"])})

    async def _as_nobody(self, work: dict) -> dict:
        import asyncio
        import dataclasses
        import json

        request = {"limits": dataclasses.asdict(self.limits), "expose": list(self.expose), **work}
        proc = await asyncio.create_subprocess_exec(
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "env",
            "-i",
            "HOME=/nonexistent",
            f"PYTHONPATH={self.source}",
            str(SYSTEM_PYTHON),
            "-c",
            UNPRIVILEGED,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(json.dumps(request).encode())
        answer = json.loads(out or b"{}") if proc.returncode == 0 else {"error": err.decode()}
        if "refused" in answer:
            pytest.skip(f"no user namespaces for a non-root user here: {answer['refused']}")
        assert "error" not in answer, answer
        return answer


UNPRIVILEGED = """
import asyncio, dataclasses, json, sys
from openparity.bench.cgroups import tree_limits
from openparity.bench.sandbox import Limits, Sandbox, SandboxOutcome, TrustedTests
from openparity.errors import OpenparityError
request = json.load(sys.stdin)
sandbox = Sandbox(Limits(**request["limits"]), expose=tuple(request["expose"]))
try:
    if "program" in request:
        outcome = asyncio.run(sandbox.run(request["program"]))
    else:
        tests = request["tests"]
        tests = TrustedTests(**{**tests, "proxy": tests["proxy"] and tuple(tests["proxy"]),
                                "shadows": tuple(tests["shadows"])})
        outcome = asyncio.run(sandbox.judge(request["answer"], tests))
    print(json.dumps(dataclasses.asdict(outcome)))
except OpenparityError as exc:
    print(json.dumps({"refused": exc.one_line()}))
"""


@pytest.fixture(scope="module", params=["root", "nobody"])
def mode(request):
    """Every hostile test runs as this process's user and, when that is root, again as the
    user nobody (Debian's python3.11 via setpriv), so the user-namespace path is tested too."""
    if request.param == "nobody" and (
        os.geteuid() != 0 or SYSTEM_PYTHON is None or shutil.which("setpriv") is None
    ):
        pytest.skip("needs root (to become nobody), setpriv and a system python3.11")
    return request.param


@pytest.fixture(scope="module")
def readable_source():
    """The package copied where the user nobody can read it."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="openparity-src-"))
    shutil.copytree(SRC / "openparity", root / "openparity")
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield root
    shutil.rmtree(root)


@pytest.fixture(scope="module")
def make_sandbox(mode, readable_source):
    """make_sandbox(limits, expose=()): a sandbox run as `mode`'s user."""

    def make(limits: Limits, expose: tuple[str, ...] = ()):
        if mode == "root":
            return Sandbox(limits, expose=expose)
        return Unprivileged(readable_source, limits, expose)

    return make
