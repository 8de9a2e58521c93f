"""Tasks: a dataset of Items, a prompt format and a scorer. Built-ins and user tasks alike."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from openparity.models.types import ChatRequest, Loglikelihood, LoglikelihoodRequest, Message


@dataclass(frozen=True)
class Item:
    """One question. `cluster` groups items that share a context (one story, one image...)."""

    id: str
    input: Mapping[str, Any]
    reference: Any
    cluster: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


# how a score's detail starts when the item's tests ran in the answer's own process (tests
# that need the answer's objects): a program sharing a process with its tests can forge a
# pass, so reports count such items
IN_ANSWER_PROCESS = "tests in the answer's process"


@dataclass(frozen=True)
class Score:
    """A score in [0, 1] and the answer the scorer read out of the response."""

    value: float
    extracted: str | None
    detail: str | None = None


@dataclass(frozen=True)
class DataSource:
    """Where a task's items came from; reports say plainly when it is a fixture."""

    description: str
    fixture: bool = False


@dataclass(frozen=True)
class PromptSettings:
    """How a task is asked: prompt variant, shots, sampling. Part of a run's identity."""

    variant: str = "zero-shot"
    max_tokens: int = 512
    temperature: float = 0.0
    samples: int = 1
    logprobs: bool = False  # record each answer's mean token logprob (gateway calibration)

    def as_dict(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "variant": self.variant,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "samples": self.samples,
        }
        if self.logprobs:  # only when set: older run ids stay the same
            settings["logprobs"] = True
        return settings

    @classmethod
    def from_run(cls, settings: Mapping[str, Any]) -> PromptSettings:
        """The prompt settings a stored run was made with (its other keys are ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in settings.items() if k in known})


class Task(abc.ABC):
    """A benchmark or business task. Subclasses load items, build requests and score answers."""

    name: str
    description: str
    variants: Sequence[str] = ("zero-shot",)
    # Variants scored by the log-likelihood of each choice instead of a generated answer (local
    # models and servers with echo logprobs only; not comparable with generative scores).
    loglikelihood_variants: Sequence[str] = ()
    needs_vision = False  # its messages carry images: only vision-capable models may run it
    circular_eval = False  # items are option rotations of one question (the cluster): all or none
    default_max_tokens: int = 512
    metric: str = "accuracy"
    equivalence_margin: float = 0.02  # in score units (0.02 = 2 points)

    @abc.abstractmethod
    def items(self) -> list[Item]:
        """All items, in a stable order."""

    @abc.abstractmethod
    def source(self) -> DataSource:
        """Where the items come from."""

    @abc.abstractmethod
    def messages(self, item: Item, variant: str) -> list[Message]:
        """The chat messages that ask `item` in prompt `variant`."""

    @abc.abstractmethod
    async def score(self, item: Item, response: str) -> Score:
        """Score one response (async: code tasks run programs in the sandbox)."""

    def check(self, settings: PromptSettings) -> None:
        """Raise a TaskError when `settings` cannot be used with this task."""
        if settings.variant not in self.variants:
            from openparity.bench.errors import TaskError

            raise TaskError(
                f"task {self.name} has no prompt variant {settings.variant!r}",
                hint=f"choose one of: {', '.join(self.variants)}",
            )

    def request(self, item: Item, settings: PromptSettings, sample: int = 0) -> ChatRequest:
        self.check(settings)
        return ChatRequest(
            messages=self.messages(item, settings.variant),
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            seed=sample if settings.samples > 1 else None,
            logprobs=settings.logprobs,
        )

    def loglikelihood_requests(self, item: Item) -> list[LoglikelihoodRequest]:
        """One (context, continuation) per choice, for the log-likelihood variants."""
        from openparity.bench.errors import TaskError

        raise TaskError(f"task {self.name} has no log-likelihood variant")

    def score_loglikelihood(self, item: Item, results: Sequence[Loglikelihood]) -> Score:
        """Score from the choices' log-likelihoods (the most likely choice wins)."""
        from openparity.bench.errors import TaskError

        raise TaskError(f"task {self.name} has no log-likelihood variant")

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what the scorer holds (an LLM judge's connections); most tasks hold nothing."""

    def default_settings(self) -> PromptSettings:
        return PromptSettings(variant=self.variants[0], max_tokens=self.default_max_tokens)


def select(
    items: Sequence[Item], limit: int | None, *, seed: int = 0, whole_clusters: bool = False
) -> list[Item]:
    """A stable subset: the first `limit` items of a seeded shuffle (same seed, same items).

    A shuffle, not the first N, because benchmark files are often sorted by subject. With
    `whole_clusters`, `limit` counts clusters and each chosen cluster comes whole (CircularEval
    needs every rotation of a question).
    """
    import random

    if whole_clusters:
        groups: dict[str, list[int]] = {}
        for index, item in enumerate(items):
            groups.setdefault(item.cluster or item.id, []).append(index)
        if limit is None or limit >= len(groups):
            return list(items)
        keys = list(groups)
        random.Random(seed).shuffle(keys)
        return [items[i] for i in sorted(i for k in keys[:limit] for i in groups[k])]
    if limit is None or limit >= len(items):
        return list(items)
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    return [items[i] for i in sorted(order[:limit])]
