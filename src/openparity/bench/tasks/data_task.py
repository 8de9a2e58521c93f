"""Tasks whose items come from a packaged file, a user's file, the Hugging Face hub or a small
fixture openparity ships; and tasks whose answers are programs run in the sandbox."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

from openparity.bench.code_answers import extract_code
from openparity.bench.errors import TaskError
from openparity.bench.sandbox import Sandbox, TrustedTests
from openparity.bench.task import IN_ANSWER_PROCESS, DataSource, Item, Score, Task
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
    """The answer is code. It runs in the sandbox as a callee; the task's tests run in a trusted
    judge process that calls it with plain data (`Sandbox.judge`), so nothing the answer does
    in its own process can make a test pass. Passing scores 1.

    Items whose tests need objects that cannot cross as data (a class the answer defines,
    objects the tests build from it) are listed in `shared_process_items`, fixed by the task and
    never by the answer: they run the old way, the answer and the tests in one sandboxed
    program that must run to its end. A program that shares a process with its tests can
    forge that end, so their scores' details start with IN_ANSWER_PROCESS and reports count
    them.
    """

    metric = "pass@1"
    shared_process_items: frozenset[str] = frozenset()

    def __init__(
        self, path: Path | None = None, *, hub: bool = False, sandbox: Sandbox | None = None
    ) -> None:
        super().__init__(path, hub=hub)
        self.sandbox = sandbox or Sandbox()

    @abc.abstractmethod
    def answer(self, item: Item, code: str) -> str:
        """What loads in the sandbox: the model's `code` with what the prompt gave it."""

    @abc.abstractmethod
    def tests(self, item: Item) -> TrustedTests:
        """The item's tests, run by the judge against the loaded answer."""

    @abc.abstractmethod
    def program(self, item: Item, code: str) -> str:
        """The answer and its tests as one program (for `shared_process_items` only)."""

    def canary(self, item: Item) -> Item | None:
        """The item with tests no consistent answer passes (`tasks.canary`), or None."""
        return None

    async def score(self, item: Item, response: str) -> Score:
        code = extract_code(response)
        if item.id in self.shared_process_items:
            outcome = await self.sandbox.run(self.program(item, code))
            detail = f"{IN_ANSWER_PROCESS}: {outcome.reason()}"
            return Score(float(outcome.passed), code, detail=detail)
        verdict = await self.sandbox.judge(self.answer(item, code), self.tests(item))
        return Score(float(verdict.passed), code, detail=verdict.reason())
