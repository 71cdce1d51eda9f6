"""Consensus over an item's labels: majority vote, a reliability-weighted vote per item, Dawid-Skene over a batch."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from crowdkit.aggregation import DawidSkene

Vote = tuple[str, str]  # (annotator_id, label)

# Matches qc's settings: a weighted consensus below this posterior goes to an expert.
DEFAULT_MIN_CONFIDENCE = 0.75
# An annotator with no golden record yet: "most around 90%" minus a margin for being unproven.
DEFAULT_UNKNOWN_RELIABILITY = 0.70
# No one is infallible: a perfect golden record over a few items must not make one vote overrule all others.
MAX_RELIABILITY = 0.99


def _latest_per_annotator(labels: Iterable[Vote]) -> dict[str, str]:
    latest: dict[str, str] = {}
    for annotator, label in labels:
        latest[annotator] = label
    return latest


def _ranked(counts: Mapping[str, float]) -> list[tuple[str, float]]:
    """Highest first; equal scores in label order, so the result does not depend on arrival order."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


@dataclass(frozen=True, slots=True)
class MajorityResult:
    """The most frequent label, or None with the tied labels when the top is shared."""

    label: str | None
    count: int
    total: int
    tied: tuple[str, ...] = ()

    @property
    def share(self) -> float:
        return self.count / self.total if self.total else 0.0


def majority_vote(labels: Iterable[Vote]) -> MajorityResult:
    """Plain majority over one vote per annotator (their latest); a tie at the top is reported, not broken."""
    counts = Counter(_latest_per_annotator(labels).values())
    if not counts:
        return MajorityResult(None, 0, 0)
    ranked = _ranked(counts)
    top = ranked[0][1]
    tied = tuple(label for label, count in ranked if count == top)
    total = sum(counts.values())
    return MajorityResult(None if len(tied) > 1 else tied[0], int(top), total, tied if len(tied) > 1 else ())


@dataclass(frozen=True, slots=True)
class ConsensusResult:
    """A weighted decision for one item. resolved is False → the item goes to an expert.

    votes: (label, count) most-voted first. posterior: (label, probability) for the voted labels,
    most probable first; the rest of the mass (1 - sum) is spread over labels nobody chose.
    """

    label: str
    confidence: float
    resolved: bool
    votes: tuple[tuple[str, int], ...]
    posterior: tuple[tuple[str, float], ...]


def vote_weight(reliability: float, n_classes: int) -> float:
    """Log-odds weight of one vote: log(p (K - 1) / (1 - p)), the one-coin model's evidence for the voted label.

    Reliability is clipped to [1/K, MAX_RELIABILITY]: a worse-than-chance annotator counts for
    nothing rather than as evidence against their own label.
    """
    p = min(max(reliability, 1.0 / n_classes), MAX_RELIABILITY)
    return math.log(p * (n_classes - 1) / (1 - p))


def decide(
    labels: Sequence[Vote],
    reliability: Mapping[str, float],
    *,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    n_classes: int | None = None,
    unknown_reliability: float = DEFAULT_UNKNOWN_RELIABILITY,
) -> ConsensusResult:
    """Weighted vote on one item under the one-coin model with a uniform class prior.

    Each annotator is right with probability p (their reliability, unknown_reliability if absent)
    and otherwise picks one of the K - 1 wrong labels uniformly. The posterior of label c is then a
    softmax over K classes of the summed vote_weight of c's voters (0 for unvoted classes).
    K (n_classes) should be the project's label-set size; when None it is the number of distinct
    voted labels (at least 2), which gives lower, more cautious confidences. The model treats
    errors as spread evenly; real errors cluster on confusable labels, so two agreeing wrong votes
    are likelier than it assumes. Resolved when the top posterior >= min_confidence and is not tied.
    """
    latest = _latest_per_annotator(labels)
    if not latest:
        raise ValueError("decide needs at least one label")
    counts = Counter(latest.values())
    k = n_classes if n_classes is not None else max(2, len(counts))
    if k < len(counts) or k < 2:
        raise ValueError(f"n_classes={k} is fewer than 2 or than the {len(counts)} distinct labels voted")
    scores: Counter[str] = Counter({label: 0.0 for label in counts})
    for annotator, label in latest.items():
        scores[label] += vote_weight(reliability.get(annotator, unknown_reliability), k)
    top_score = max(scores.values())
    # Softmax shifted by the top score; the K - len(counts) unvoted classes all have score 0.
    unvoted = (k - len(counts)) * math.exp(-top_score)
    z = sum(math.exp(s - top_score) for s in scores.values()) + unvoted
    posterior = [(label, math.exp(s - top_score) / z) for label, s in _ranked(scores)]
    label, confidence = posterior[0]
    tied = len(posterior) > 1 and math.isclose(posterior[1][1], confidence, rel_tol=1e-9)
    return ConsensusResult(
        label=label,
        confidence=confidence,
        resolved=not tied and confidence >= min_confidence,
        votes=tuple((lbl, int(c)) for lbl, c in _ranked(counts)),
        posterior=tuple(posterior),
    )


@dataclass(frozen=True, slots=True)
class ItemPosterior:
    """Dawid-Skene's label for one item and its posterior probability."""

    label: str
    confidence: float


@dataclass(frozen=True, slots=True)
class DawidSkeneResult:
    """Per-item labels and confidences, and each worker's estimated accuracy (usable as decide's reliability)."""

    items: dict[str, ItemPosterior]
    worker_accuracy: dict[str, float]


def dawid_skene(records: Iterable[tuple[str, str, str]], *, n_iter: int = 100, tol: float = 1e-5) -> DawidSkeneResult:
    """crowd-kit's DawidSkene over (task, worker, label) records, latest label per (task, worker).

    A worker's accuracy is sum over true classes c of prior(c) * P(says c | truth c), from the
    fitted confusion matrices. Classic Dawid-Skene is a batch EM: it needs many tasks per worker
    and its posteriors are overconfident on small batches.
    """
    latest = {(task, worker): label for task, worker, label in records}
    if not latest:
        return DawidSkeneResult({}, {})
    frame = pd.DataFrame([(t, w, lbl) for (t, w), lbl in latest.items()], columns=["task", "worker", "label"])
    with warnings.catch_warnings():
        # crowd-kit 1.4 still uses pandas' inplace=/copy= keywords, deprecated in pandas 3: noise, not our bug.
        warnings.filterwarnings("ignore", module=r"crowdkit\.")
        model = DawidSkene(n_iter=n_iter, tol=tol).fit(frame)
    probas, priors, errors = model.probas_, model.priors_, model.errors_
    items = {}
    for task, row in probas.iterrows():
        best = _ranked({str(c): float(p) for c, p in row.items()})[0]
        items[str(task)] = ItemPosterior(best[0], best[1])
    accuracy = {}
    for worker in frame["worker"].unique():
        own = errors.loc[worker]
        accuracy[str(worker)] = float(
            sum(priors[c] * own.at[c, c] for c in priors.index if c in own.index and c in own.columns)
        )
    return DawidSkeneResult(items, accuracy)
