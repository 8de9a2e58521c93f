"""Every README and docs/ example is true: each `openparity` line parses against the real CLI,
each benchmark script it names exists, and the lines that need no API key, no server and no
placeholder run as written in a fresh directory (long ones shortened by the table below), in
the order a user reads them: the README, then the step guides in docs/."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import click
import pytest
import typer.main

from openparity.cli import app
from tests.cli import openparity

ROOT = Path(__file__).resolve().parents[1]
# the README, then the guides in the order they build on each other (measure writes gap.json,
# which decide reads); every page in docs/ must be listed
PAGES = [
    "README.md",
    "docs/install.md",
    "docs/models.md",
    "docs/measure.md",
    "docs/decide.md",
    "docs/route.md",
    "docs/close.md",
    "docs/benchmarks.md",
]


def pages_text() -> str:
    return "\n".join((ROOT / page).read_text(encoding="utf-8") for page in PAGES)


# what makes a README line unrunnable here (the line still has to parse)
NEEDS_KEY = re.compile(r"gpt-4o|deepseek:|qwen-vllm|openai:gpt")
NEEDS_SERVER = re.compile(
    r"serve-local|^openparity serve |@http://127\.0\.0\.1:8000|postgresql://|federated (serve|join)"
)
PLACEHOLDER = re.compile(r"\bRUN_[A-Z]+\b|\bRUN_ID\b")
NEEDS_GENERATED_DATA = re.compile(r"gen\.jsonl|cleaned/|fmt/|pairs\.jsonl|align-runs/|fed-runs/")

# long defaults, shortened for the test (what the user runs is the line as written)
SHORTER = {
    "--limit 200": "--limit 3",
    "--limit 40 --samples 5": "--limit 2 --samples 2",
    "--steps 600": "--steps 3",
    "--draws 1000000": "--draws 4000",
}


def readme_lines() -> list[str]:
    """The shell commands of the README's ```bash blocks, comments stripped."""
    text = pages_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.split(r"\s{2,}#", line)[0].strip()
            if command and not command.startswith("#"):
                lines.append(command)
    return lines


def openparity_lines() -> list[str]:
    return [line for line in readme_lines() if line.startswith("openparity ")]


def parse_only(args: list[str]) -> None:
    """Resolve the sub-command and parse every option and argument, running nothing."""
    command: click.Command = typer.main.get_command(app)
    ctx = command.make_context("openparity", list(args))
    while isinstance(command, click.Group):
        name, command, rest = command.resolve_command(ctx, ctx.protected_args + ctx.args)
        ctx = command.make_context(name, rest, parent=ctx)


def test_every_guide_is_read_and_linked_from_the_readme():
    on_disk = sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))
    assert sorted(PAGES[1:]) == on_disk
    front = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in PAGES[1:]:
        assert f"]({page})" in front, page
    assert "](docs/gap-report.png)" in front and (ROOT / "docs/gap-report.png").is_file()
    assert len(front.splitlines()) < 80  # a front door, not the manual
    for page in PAGES:  # every relative link points at a file
        text = (ROOT / page).read_text(encoding="utf-8")
        for target in re.findall(r"\]\((?!https?:|#)([^)]+)\)", text):
            assert ((ROOT / page).parent / target).exists(), (page, target)


def test_the_readme_has_its_two_commands_and_a_tour():
    lines = readme_lines()
    assert any("openparity gap" in line and "scripts/install.sh" in line for line in lines)
    assert "bash scripts/test.sh" in lines
    assert len(openparity_lines()) >= 30


@pytest.mark.parametrize("line", openparity_lines())
def test_every_readme_command_parses(line):
    try:
        parse_only(shlex.split(line)[1:])
    except click.UsageError as exc:
        pytest.fail(f"README line does not parse: {line}\n{exc.format_message()}")


def test_every_benchmark_the_readme_names_exists_with_its_options():
    for line in readme_lines():
        if line.startswith("python benchmarks/"):
            words = shlex.split(line)
            script = ROOT / words[1]
            assert script.is_file(), line
            source = script.read_text(encoding="utf-8")
            for option in (w for w in words[2:] if w.startswith("--")):
                assert f'"{option}"' in source, f"{script.name} has no {option}"


def runnable(line: str) -> bool:
    return not any(
        rule.search(line) for rule in (NEEDS_KEY, NEEDS_SERVER, PLACEHOLDER, NEEDS_GENERATED_DATA)
    )


def shortened(line: str) -> str:
    for long, short in SHORTER.items():
        line = line.replace(long, short)
    if line.startswith("openparity gap ") and "--limit" not in line:
        line += " --limit 2"  # the default subset takes minutes
    trains = line.startswith(
        ("openparity moe compare", "openparity moe train", "openparity sparse")
    )
    if trains and "--steps" not in line:
        line += " --steps 3"  # 200 steps: a minute or two
    return line


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    """One fresh directory for the whole tour: later lines read what earlier ones wrote
    (gap.json, moe-runs/...), as they would for a user following the README."""
    directory = tmp_path_factory.mktemp("tour")
    shutil.copytree(ROOT / "examples", directory / "examples")
    shutil.copy(directory / "examples" / "gateway.yaml", directory / "gateway.yaml")
    scenario = ROOT / "src/openparity/forecast/scenarios/seed-parity.yaml"
    shutil.copy(scenario, directory / "my-scenario.yaml")  # "your own scenario"
    return directory


RUNNABLE = [line for line in openparity_lines() if runnable(line)]


def test_most_of_the_tour_runs_here():
    assert len(RUNNABLE) >= 18, RUNNABLE


@pytest.mark.parametrize("line", RUNNABLE)
@pytest.mark.slow
def test_the_readme_tour_runs_as_written(tour, line):
    """Each line in README order, each with its own time limit."""
    result = openparity(*shlex.split(shortened(line))[1:], timeout=280, cwd=tour)
    assert result.returncode == 0, f"{line}\n{result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr, line


def python_blocks() -> list[str]:
    text = pages_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


GATEWAY_CLIENT = "http://127.0.0.1:8800/v1"


def test_every_readme_python_block_is_python():
    blocks = python_blocks()
    assert len(blocks) >= 5
    for block in blocks:
        compile(block, "README.md", "exec")


@pytest.mark.parametrize(
    "block", [b for b in python_blocks() if "client." not in b], ids=lambda b: b.split("\n")[0]
)
@pytest.mark.slow
def test_every_self_contained_readme_python_block_runs(block, tmp_path):
    import subprocess
    import sys

    ran = subprocess.run(
        [sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=280
    )
    assert ran.returncode == 0, ran.stderr[-2000:]


@pytest.mark.slow
def test_the_readme_gateway_client_block_runs_against_the_example_gateway(tmp_path):
    """The first `openai` snippet, as written, against `openparity serve -c
    examples/gateway.yaml` on a fresh machine (no OPENAI_API_KEY): the embedded tier answers."""
    import subprocess
    import sys

    from openparity.models.local_server import free_port
    from tests.route.gateway import serving

    (block,) = [b for b in python_blocks() if GATEWAY_CLIENT in b and "with_raw_response" in b]
    config = tmp_path / "gateway.yaml"
    shutil.copy(ROOT / "examples" / "gateway.yaml", config)
    key = openparity("route", "keys", "add", "me", "-c", str(config), cwd=tmp_path).stdout.strip()
    port = free_port()
    with serving(config, port, cwd=tmp_path) as url:
        code = block.replace(GATEWAY_CLIENT, url).replace('"op-..."', repr(key))
        code += "\nprint(raw.headers['x-openparity-model'], raw.headers['x-openparity-route'])"
        ran = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=280
        )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.split() == ["local:smollm2-135m", "direct"]


# The lines that read data earlier lines wrote (fmt/, align-runs/, gen.jsonl ...), run in README
# order in one directory. Only sizes shrink; the two files a user brings (seeds, DPO pairs) are
# written in the format the README gives, and the teacher that needs a key is the embedded model.
CHAIN_SHORTER = {
    "--steps 16": "--steps 2",
    "--limit 40": "--limit 2",
    "--eval-items 20": "--eval-items 2",
    "--eval-items 40": "--eval-items 2",
    "--rounds 3": "--rounds 1",
    "--local-steps 4": "--local-steps 1",
    "--items 200:600": "--items 200:202",
    "--generations 4 --batch-size 8": "--generations 2 --batch-size 2 --max-completion 16",
    "--teacher openai:gpt-4o": "--teacher local:smollm2-135m",
    "--count 500": "--count 2",
    "--members 4": "--members 2",
}
CHAIN_STEPS = ("openparity align ", "openparity federated compare")  # default 50 steps / 3 rounds


def chain_lines() -> list[str]:
    """`python examples/...` data makers and the generated-data lines, in README order."""
    lines = []
    for line in readme_lines():
        maker = line.startswith("python examples/")
        generated = line.startswith("openparity ") and NEEDS_GENERATED_DATA.search(line)
        blocked = NEEDS_SERVER.search(line) or PLACEHOLDER.search(line)
        if (maker or generated) and not blocked and line not in lines:
            lines.append(line)
    return lines


def chain_shortened(line: str) -> str:
    for long, short in CHAIN_SHORTER.items():
        line = line.replace(long, short)
    if line.startswith(CHAIN_STEPS) and "--steps" not in line and "export" not in line:
        line += " --steps 1" if line.startswith("openparity align") else " --rounds 1"
    if line.startswith("openparity federated compare") and "--local-steps" not in line:
        line += " --local-steps 1"
    return line


def test_the_generated_data_chain_covers_the_readme():
    lines = chain_lines()
    assert lines[0].startswith("python examples/align/gsm8k_format.py")
    expected_lines = (
        "align sft",
        "align dpo",
        "align grpo",
        "align export",
        "federated simulate",
        "federated report",
        "federated compare",
        "data clean",
        "data publish",
    )
    for expected in expected_lines:
        assert any(expected in line for line in lines), expected


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_the_readme_lines_on_generated_data_run_as_written(tmp_path):
    """Each line in README order in one fresh directory, on the data the lines before it made."""
    import json
    import subprocess
    import sys

    seeds = [
        {"id": "s1", "prompt": "Explain what a hash map is in one sentence."},
        {"id": "s2", "prompt": "用一句话解释什么是哈希表。"},
    ]
    (tmp_path / "seeds.jsonl").write_text(
        "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in seeds), encoding="utf-8"
    )
    pairs = [
        {"prompt": f"What is {a} + {a}?", "chosen": f"{2 * a}.", "rejected": f"{2 * a + 1}."}
        for a in range(1, 9)
    ]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    for line in chain_lines():
        words = shlex.split(chain_shortened(line))
        if words[0] == "python":
            ran = subprocess.run(
                [sys.executable, str(ROOT / words[1]), *words[2:]],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=600,
            )
        else:
            ran = openparity(*words[1:], timeout=900, cwd=tmp_path)
        assert ran.returncode == 0, f"{line}\n{ran.stderr[-3000:]}"
        assert "Traceback" not in ran.stderr, line
