"""Curriculum from measured difficulty: the base model's own per-item results in the run store
(`openparity bench run BASE TASK`) order the training examples easiest first (the items the
base model already solves most often), and the Trainer then reads them in that order instead of
shuffling. Ties, and examples the run did not score, are ordered by the seed; the unscored ones
go last (unknown difficulty is treated as hardest) and are counted."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from openparity.align.errors import AlignError
from openparity.align.examples import Examples


@dataclass(frozen=True)
class Curriculum:
    run_id: str
    store: Path

    def difficulty(self) -> dict[str, float]:
        """item id -> the base model's mean score on it (1.0: always solved, easiest)."""
        from openparity.bench.comparison import load_scores
        from openparity.bench.store import RunStore

        if not self.store.is_file():
            raise AlignError(
                f"no run store at {self.store} for --curriculum",
                hint="run the base model first: openparity bench run BASE TASK (or pass --store)",
            )
        scores = load_scores(RunStore(self.store), self.run_id).scores
        # a custom task's item ids carry the task's name ("task/<record id>"): match both
        aliases = {i.split("/", 1)[1]: v for i, v in scores.items() if "/" in i}
        return aliases | scores

    def order(self, examples: Examples, seed: int) -> Examples:
        """The examples easiest first; counts the ones the run did not score."""
        scores = self.difficulty()
        rng = random.Random(seed)
        tiebreak = [rng.random() for _ in examples.ids]
        unscored = sum(1 for i in examples.ids if i not in scores)
        if unscored == len(examples.ids):
            raise AlignError(
                f"run {self.run_id} scored none of the {len(examples.ids)} training examples",
                hint="give the run of the base model on the task these examples come from"
                " (ids must match: the records' id field, or the task's item ids)",
            )
        rank = sorted(
            range(len(examples.ids)),
            key=lambda k: (-scores.get(examples.ids[k], -1.0), tiebreak[k]),
        )
        ordered = Examples(
            [examples.rows[k] for k in rank],
            examples.source,
            examples.dropped.copy(),
            examples.items_hit,
            [examples.ids[k] for k in rank],
        )
        if unscored:
            ordered.dropped["unscored by the curriculum run (placed last)"] = unscored
        return ordered
