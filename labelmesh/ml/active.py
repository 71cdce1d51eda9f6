"""Active learning: how informative a model's prediction is, so scarce human time goes to the most useful items."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np
from scipy.stats import entropy as _entropy


class Strategy(StrEnum):
    MARGIN = "margin"  # 1 - (p1 - p2): the two best labels are close
    ENTROPY = "entropy"  # Shannon entropy of the distribution, divided by log(n classes)
    LEAST_CONFIDENT = "least_confident"  # 1 - p1


def informativeness(probs: np.ndarray, strategy: Strategy | str = Strategy.MARGIN) -> np.ndarray:
    """Per row of a (n, classes) probability matrix, a score in [0, 1]; higher = more worth a human's time."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"expected probabilities of shape (n, classes >= 2), got {probs.shape}")
    if np.any(probs < 0) or np.any(probs.sum(axis=1) > 1.0 + 1e-6):
        raise ValueError("probabilities must be non-negative and sum to at most 1 per row")
    strategy = Strategy(strategy)
    if strategy is Strategy.ENTROPY:
        # A row summing to less than 1 is a truncated top-k: the missing mass counts as one more outcome,
        # which gives a lower bound of the full distribution's entropy.
        rest = np.clip(1.0 - probs.sum(axis=1, keepdims=True), 0.0, None)
        full = np.hstack([probs, rest])
        h = _entropy(full, axis=1) if len(full) else np.empty(0)
        return np.clip(h / np.log(probs.shape[1]), 0.0, 1.0)
    top2 = -np.sort(-probs, axis=1)[:, :2]
    if strategy is Strategy.MARGIN:
        return 1.0 - (top2[:, 0] - top2[:, 1])
    return 1.0 - top2[:, 0]


def top_k_informativeness(top_k: Sequence[float], n_classes: int,
                          strategy: Strategy | str = Strategy.MARGIN) -> float:
    """The same score from a pre-label's top-k probabilities (most probable first, possibly truncated).

    Margin and least-confident need only the top two, so they are exact; entropy is a lower bound when
    the list is truncated. An item with no pre-label at all is maximally informative (1.0).
    """
    if not top_k:
        return 1.0
    if n_classes < 2:
        raise ValueError("n_classes must be at least 2")
    row = np.zeros(max(n_classes, len(top_k)), dtype=np.float64)
    row[: len(top_k)] = np.clip(np.asarray(top_k, dtype=np.float64), 0.0, 1.0)
    total = row.sum()
    if total > 1.0:  # rounding in transit; renormalise rather than reject a pre-label
        row /= total
    return float(informativeness(row[None, :], strategy)[0])


def most_informative(probs: np.ndarray, k: int, strategy: Strategy | str = Strategy.MARGIN) -> np.ndarray:
    """Indices of the k most informative rows, most informative first; ties keep the original order."""
    if k < 0:
        raise ValueError("k must be non-negative")
    scores = informativeness(probs, strategy)
    return np.argsort(-scores, kind="stable")[:k]


def review_priority(top_k: Sequence[float], *, spot_check: bool = False) -> float:
    """Where a human task goes in the queue (higher first): the pre-label's margin informativeness.

    Spot checks go first whatever their confidence: they are a small random sample of auto-labelled
    items whose only purpose is to measure auto-label accuracy (and so the thresholds), and ordering
    them by uncertainty would starve exactly them when human capacity is short.
    """
    if spot_check:
        return 2.0
    # top_k_informativeness(top_k, max(2, len(top_k)), Strategy.MARGIN), in plain Python: the gateway scores every
    # item.routed on each replica, and numpy's per-call overhead on five numbers was 18 us of the ~110 us each
    # replica spent per routed item (cProfile of the hint broadcast; tests/unit/ml/test_active.py pins equality).
    if not top_k:
        return 1.0
    row = [min(max(float(p), 0.0), 1.0) for p in top_k]
    total = sum(row)
    if total > 1.0:  # rounding in transit; renormalise rather than reject a pre-label
        row = [p / total for p in row]
    first, second = (sorted(row, reverse=True) + [0.0])[:2]
    return 1.0 - (first - second)
