"""Confident learning (Northcutt, Jiang & Chuang, JAIR 2021): rank the labelled set's likely label errors.

Implemented on numpy rather than by calling cleanlab: the part qc needs (thresholds, confident
joint, off-diagonal filter, ranking) is ~40 lines, and keeping cleanlab and its dependency tree out
of the qc service's run time is worth more than the reuse (cleanlab is a dev dependency only).
tests/unit/qc/test_label_errors.py compares the findings with cleanlab.filter.find_label_issues.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

RankBy = Literal["self_confidence", "normalized_margin"]
DEFAULT_FOLDS = 5
# cleanlab compares probabilities with thresholds with the same slack, so ties count as confident.
_EPS = 1e-6


def out_of_fold_probabilities(
    embeddings: np.ndarray, labels: Sequence[str], *, folds: int = DEFAULT_FOLDS, seed: int = 0
) -> tuple[np.ndarray, tuple[str, ...]]:
    """P(class | embedding) for each item from a logistic regression that never saw that item's label.

    Returns (probabilities n x K, the classes in column order, sorted). Every class needs at least
    `folds` items, or some fold would train without it.
    """
    x = np.asarray(embeddings, dtype=float)
    y = np.asarray(labels)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError("embeddings must be 2-D with one row per label")
    counts = Counter(y.tolist())
    small = sorted(label for label, n in counts.items() if n < folds)
    if small or len(counts) < 2:
        raise ValueError(f"need >= 2 classes with >= {folds} items each; too few items: {small}")
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    probs = cross_val_predict(LogisticRegression(max_iter=2000), x, y, cv=cv, method="predict_proba")
    return probs, tuple(sorted(counts))


@dataclass(frozen=True, slots=True)
class LabelIssue:
    """One likely label error; what qc.flagged (kind likely_label_error) carries as evidence."""

    index: int
    item_id: str | None
    given: str
    suggested: str  # the class the item is confidently of
    self_confidence: float  # P(given)
    normalized_margin: float  # (P(given) - max other P + 1) / 2; below 0.5 the model prefers another label


@dataclass(frozen=True, slots=True)
class LabelErrorReport:
    """Issues most likely first, with the per-class thresholds and the confident joint (rows given, columns true)."""

    classes: tuple[str, ...]
    thresholds: tuple[float, ...]
    confident_joint: tuple[tuple[int, ...], ...]
    issues: tuple[LabelIssue, ...]
    skipped: tuple[int, ...] = ()  # items whose class was too small to cross-validate (label_error_pass)

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(issue.index for issue in self.issues)


def find_label_errors(
    labels: Sequence[str],
    probabilities: np.ndarray,
    classes: Sequence[str],
    *,
    ids: Sequence[str] | None = None,
    rank_by: RankBy = "self_confidence",
) -> LabelErrorReport:
    """Confident learning over out-of-fold probabilities.

    t_j = mean P(j) over items labelled j. An item is confidently of class j when P(j) >= t_j; among
    several such classes the most probable wins. Counting (given, confident class) pairs gives the
    confident joint; its off-diagonal items are the candidates, except those whose given label is
    still the model's top prediction (cleanlab drops these too). Ranked lowest first by
    self-confidence P(given) or by the normalized margin.
    """
    if rank_by not in ("self_confidence", "normalized_margin"):
        raise ValueError(f"rank_by must be 'self_confidence' or 'normalized_margin', got {rank_by!r}")
    probs = np.asarray(probabilities, dtype=float)
    classes = tuple(classes)
    if probs.ndim != 2 or probs.shape != (len(labels), len(classes)):
        raise ValueError(f"probabilities must be {len(labels)} x {len(classes)}, got {probs.shape}")
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ValueError(f"labels not among the classes: {unknown}")
    if ids is not None and len(ids) != len(labels):
        raise ValueError("ids must have one entry per label")
    column = {c: j for j, c in enumerate(classes)}
    given = np.array([column[label] for label in labels], dtype=int)
    n, k = probs.shape
    rows = np.arange(n)

    # A class nobody was given gets an unreachable threshold: nothing is confidently of it.
    thresholds = np.array([probs[given == j, j].mean() if np.any(given == j) else np.inf for j in range(k)])
    confident = probs >= thresholds - _EPS
    has_confident = confident.any(axis=1)
    true = np.where(confident, probs, -np.inf).argmax(axis=1)
    joint = np.zeros((k, k), dtype=int)
    np.add.at(joint, (given[has_confident], true[has_confident]), 1)

    self_conf = probs[rows, given]
    others = probs.copy()
    others[rows, given] = -np.inf
    margin = (self_conf - others.max(axis=1) + 1) / 2
    candidate = has_confident & (true != given) & (probs.argmax(axis=1) != given)

    score = self_conf if rank_by == "self_confidence" else margin
    order = sorted(np.flatnonzero(candidate).tolist(), key=lambda i: (score[i], i))
    issues = tuple(
        LabelIssue(
            index=i,
            item_id=ids[i] if ids is not None else None,
            given=classes[given[i]],
            suggested=classes[true[i]],
            self_confidence=float(self_conf[i]),
            normalized_margin=float(margin[i]),
        )
        for i in order
    )
    return LabelErrorReport(classes, tuple(float(t) for t in thresholds), tuple(map(tuple, joint.tolist())), issues)


def label_error_pass(
    embeddings: np.ndarray,
    labels: Sequence[str],
    ids: Sequence[str],
    *,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    rank_by: RankBy = "self_confidence",
) -> LabelErrorReport:
    """The whole pass over a labelled set: out-of-fold probabilities, then find_label_errors.

    Items of classes with fewer than `folds` items cannot get an out-of-fold probability; they
    are left out and listed in `skipped` (by index), never silently judged. Issue indices refer
    to the full input.
    """
    x = np.asarray(embeddings, dtype=float)
    if x.ndim != 2 or len(x) != len(labels) or len(labels) != len(ids):
        raise ValueError("embeddings must be 2-D with one row per label and per id")
    counts = Counter(labels)
    kept = [i for i, label in enumerate(labels) if counts[label] >= folds]
    skipped = tuple(i for i, label in enumerate(labels) if counts[label] < folds)
    if len({labels[i] for i in kept}) < 2:
        return LabelErrorReport((), (), (), (), tuple(range(len(labels))))
    sub_labels = [labels[i] for i in kept]
    probs, classes = out_of_fold_probabilities(x[kept], sub_labels, folds=folds, seed=seed)
    report = find_label_errors(sub_labels, probs, classes, ids=[ids[i] for i in kept], rank_by=rank_by)
    issues = tuple(
        LabelIssue(kept[issue.index], issue.item_id, issue.given, issue.suggested, issue.self_confidence,
                   issue.normalized_margin)
        for issue in report.issues
    )
    return LabelErrorReport(report.classes, report.thresholds, report.confident_joint, issues, skipped)
