"""Exact and near-duplicate removal. Exact: a hash of the normalised text. Near: MinHash over
word 5-gram shingles with LSH (datasketch). The bands x rows split is datasketch's optimum for
the Jaccard threshold with false negatives weighted 9 to 1 over false positives, because every
LSH candidate is confirmed by its estimated Jaccard before a record is dropped: a false positive
costs one comparison, a false negative a duplicate in the training set. At 0.8 and 128
permutations that is 14 bands x 9 rows: P(candidate) is 0.87 at Jaccard 0.8, 0.975 at 0.85,
0.999 at 0.9."""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from openparity.data.records import Doc, fingerprint, words

SHINGLE = 5


@dataclass
class ExactDedup:
    name: str = "exact_dedup"
    seen: dict[str, str] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)

    def __call__(self, doc: Doc) -> str | None:
        key = fingerprint(doc.text)
        first = self.seen.setdefault(key, doc.id)
        if first != doc.id:
            self.counts["exact_duplicate"] += 1
            return f"exact_duplicate:{first}"
        return None

    def remember(self, doc: Doc) -> None:
        self.seen.setdefault(fingerprint(doc.text), doc.id)


class DiskExactDedup(ExactDedup):
    """ExactDedup with its fingerprints in SQLite instead of a dict: flat memory."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "exact.sqlite").unlink(missing_ok=True)  # rebuilt on every (re)start
        self._db = sqlite3.connect(directory / "exact.sqlite")
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
            "CREATE TABLE seen (hash TEXT PRIMARY KEY, id TEXT);"
        )

    def __call__(self, doc: Doc) -> str | None:
        key = fingerprint(doc.text)
        found = self._db.execute("SELECT id FROM seen WHERE hash = ?", (key,)).fetchone()
        if found is not None and found[0] != doc.id:
            self.counts["exact_duplicate"] += 1
            return f"exact_duplicate:{found[0]}"
        if found is None:
            self._db.execute("INSERT INTO seen VALUES (?, ?)", (key, doc.id))
        return None

    def remember(self, doc: Doc) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO seen VALUES (?, ?)", (fingerprint(doc.text), doc.id)
        )


def shingles(text: str, size: int = SHINGLE) -> set[bytes]:
    tokens = words(text)
    if len(tokens) < size:
        return {" ".join(tokens).encode("utf-8")}
    return {" ".join(tokens[i : i + size]).encode("utf-8") for i in range(len(tokens) - size + 1)}


@dataclass
class NearDedup:
    threshold: float = 0.8
    num_perm: int = 128
    seed: int = 1
    name: str = "near_dedup"
    counts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        from datasketch import MinHash, MinHashLSH

        self._minhash = MinHash
        self.lsh = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm, weights=(0.1, 0.9))
        self._hashes: dict[str, object] = {}
        # one template so every signature shares the permutations (and skips regenerating them)
        self._template = MinHash(num_perm=self.num_perm, seed=self.seed)

    @property
    def bands_rows(self) -> tuple[int, int]:
        return self.lsh.b, self.lsh.r

    def signature(self, text: str):
        minhash = self._minhash(
            num_perm=self.num_perm,
            seed=self.seed,
            permutations=self._template.permutations,
            scheme=self._template.scheme,
        )
        minhash.update_batch(list(shingles(text)))
        return minhash

    def __call__(self, doc: Doc) -> str | None:
        signature = self.signature(doc.text)
        for candidate in self.lsh.query(signature):
            if signature.jaccard(self._hashes[candidate]) >= self.threshold:
                self.counts["near_duplicate"] += 1
                return f"near_duplicate:{candidate}"
        self._insert(doc.id, signature)
        return None

    def remember(self, doc: Doc) -> None:
        if doc.id not in self._hashes:
            self._insert(doc.id, self.signature(doc.text))

    def _insert(self, key: str, signature) -> None:
        self._hashes[key] = signature
        self.lsh.insert(key, signature)


def expected_catch_rate(similarity: float, bands: int, rows: int) -> float:
    """Probability LSH with `bands` x `rows` makes two documents of this Jaccard candidates."""
    return float(1 - (1 - np.power(similarity, rows)) ** bands)


class DiskNearDedup(NearDedup):
    """NearDedup whose LSH index and signatures live on disk, not in the Python process: band
    hashes in SQLite (indexed by band and hash), signatures appended to a flat file and read
    back by offset to confirm each candidate. Memory stays flat however many records are kept;
    each record costs `bands` indexed lookups. Same bands x rows and the same decisions as the
    in-memory index."""

    def __init__(
        self, directory: Path, threshold: float = 0.8, num_perm: int = 128, seed: int = 1
    ) -> None:
        super().__init__(threshold=threshold, num_perm=num_perm, seed=seed)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in (directory / "bands.sqlite", directory / "signatures.bin"):
            stale.unlink(missing_ok=True)  # rebuilt from kept.jsonl on every (re)start
        self._db = sqlite3.connect(directory / "bands.sqlite")
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
            "CREATE TABLE bands (band INTEGER, hash BLOB, doc INTEGER);"
            "CREATE INDEX bands_lookup ON bands (band, hash);"
            "CREATE TABLE docs (doc INTEGER PRIMARY KEY, key TEXT);"
        )
        self._signatures = (directory / "signatures.bin").open("a+b")
        self._count = 0
        self._width = num_perm * 8  # uint64 hash values

    def _bands(self, signature) -> list[tuple[int, bytes]]:
        bands, rows = self.bands_rows
        values = signature.hashvalues.astype(np.uint64)
        return [(b, values[b * rows : (b + 1) * rows].tobytes()) for b in range(bands)]

    def _stored(self, doc: int) -> np.ndarray:
        raw = os.pread(self._signatures.fileno(), self._width, doc * self._width)
        return np.frombuffer(raw, dtype=np.uint64)

    def __call__(self, doc: Doc) -> str | None:
        signature = self.signature(doc.text)
        bands = self._bands(signature)
        candidates: set[int] = set()
        for band, key in bands:
            candidates.update(
                r[0]
                for r in self._db.execute(
                    "SELECT doc FROM bands WHERE band = ? AND hash = ?", (band, key)
                )
            )
        values = signature.hashvalues.astype(np.uint64)
        for candidate in sorted(candidates):
            if float(np.mean(self._stored(candidate) == values)) >= self.threshold:
                self.counts["near_duplicate"] += 1
                (key,) = self._db.execute(
                    "SELECT key FROM docs WHERE doc = ?", (candidate,)
                ).fetchone()
                return f"near_duplicate:{key}"
        self._insert_bands(doc.id, values, bands)
        return None

    def remember(self, doc: Doc) -> None:
        signature = self.signature(doc.text)
        self._insert_bands(doc.id, signature.hashvalues.astype(np.uint64), self._bands(signature))

    def _insert_bands(self, key: str, values: np.ndarray, bands: list[tuple[int, bytes]]) -> None:
        index = self._count
        self._count += 1
        self._db.execute("INSERT INTO docs VALUES (?, ?)", (index, key))
        self._signatures.seek(0, os.SEEK_END)
        self._signatures.write(values.tobytes())
        self._signatures.flush()
        self._db.executemany(
            "INSERT INTO bands VALUES (?, ?, ?)", [(band, h, index) for band, h in bands]
        )
