"""Nearest-neighbour consistency: does a new label agree with the labels of the most similar labelled items?"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_K = 10
DEFAULT_THRESHOLD = 0.8
# Cosine similarity under which an item is not "similar" at all and casts no vote. For sentence
# encoders like all-MiniLM-L6-v2, paraphrases sit above ~0.6 and unrelated texts below ~0.3.
DEFAULT_MIN_SIMILARITY = 0.5


@dataclass(frozen=True, slots=True)
class KnnFinding:
    """The check's verdict and its evidence, nearest first; what qc.flagged (kind knn_inconsistency) carries.

    majority_label is the most common label among the neighbours other than the one given, and
    majority_share its count divided by k (not by the neighbours found: fewer similar items than k
    is weaker evidence, and counts as such).
    """

    label: str
    flagged: bool
    k: int
    neighbour_ids: tuple[str, ...]
    neighbour_labels: tuple[str, ...]
    similarities: tuple[float, ...]
    majority_label: str | None
    majority_share: float
    agreeing_share: float
    message: str


def _norms(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=-1)
    if np.any(norms == 0):
        raise ValueError("an embedding is all zeros: cosine similarity is undefined")
    return norms


def _positions(ids: Sequence[str], item_id: str) -> list[int]:
    """Where item_id sits in ids (list.index runs in C; ids of an index are unique, so this is one scan)."""
    found: list[int] = []
    start = 0
    while True:
        try:
            start = ids.index(item_id, start)
        except ValueError:
            return found
        found.append(start)
        start += 1


def _top(sims: np.ndarray, take: int) -> np.ndarray:
    """Positions of the `take` largest values, largest first, ties in position order: what a stable sort of
    all of them gives, at the cost of a partition and a sort of the few that can make it."""
    neg = -sims
    if take < len(neg):
        kth = np.partition(neg, take - 1)[take - 1]
        candidates = np.flatnonzero(neg <= kth)
        return candidates[np.argsort(neg[candidates], kind="stable")][:take]
    return np.argsort(neg, kind="stable")[:take]


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / _norms(matrix)[..., None]


def knn_check(
    embedding: Sequence[float] | np.ndarray,
    label: str,
    embeddings: np.ndarray,
    labels: Sequence[str],
    ids: Sequence[str],
    *,
    item_id: str | None = None,
    k: int = DEFAULT_K,
    threshold: float = DEFAULT_THRESHOLD,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
) -> KnnFinding:
    """Compare label with the labels of the k most cosine-similar labelled items (item_id itself excluded).

    Flagged when one other label holds at least threshold * k of the neighbours that are at least
    min_similarity alike. With the defaults: 8 of the 10 nearest carry the same other label.
    """
    # float32 rows stay float32: qc's index holds 384-d float32 rows for every final label of a project, and
    # the float64 copy, the per-id exclusion loop and a full sort cost O(n) Python work per human label.
    matrix = np.asarray(embeddings)
    if matrix.dtype not in (np.float32, np.float64):
        matrix = matrix.astype(np.float64)
    if matrix.ndim != 2 or len(matrix) != len(labels) or len(labels) != len(ids):
        raise ValueError("embeddings must be 2-D with one row per label and per id")
    query = np.asarray(embedding, dtype=matrix.dtype)
    if matrix.size and query.shape != (matrix.shape[1],):
        raise ValueError(f"embedding has shape {query.shape}, the labelled ones have {matrix.shape[1]} columns")
    if k < 1 or not 0.0 < threshold <= 1.0:
        raise ValueError(f"need k >= 1 and threshold in (0, 1], got k={k}, threshold={threshold}")

    excluded = _positions(ids, item_id) if item_id is not None else []
    take = min(k, len(ids) - len(excluded))
    if take > 0:
        sims = (matrix @ _unit_rows(query[None, :])[0]).astype(np.float64) / _norms(matrix).astype(np.float64)
        sims[excluded] = -np.inf
        chosen = _top(sims, take)
        chosen = chosen[sims[chosen] >= min_similarity]
    else:
        sims, chosen = np.empty(0), np.empty(0, dtype=int)
    n_labels = tuple(labels[i] for i in chosen)
    others = Counter(x for x in n_labels if x != label)
    majority, count = min(others.items(), key=lambda kv: (-kv[1], kv[0])) if others else (None, 0)
    share = count / k
    agreeing = sum(1 for x in n_labels if x == label) / k
    flagged = majority is not None and share >= threshold
    if flagged:
        message = (
            f"You labelled this {label!r}, but {share:.0%} of the {k} most similar labelled items "
            f"are {majority!r}. Please double-check."
        )
    else:
        message = f"{label!r}: {agreeing:.0%} of the {k} most similar labelled items agree"
        if majority is not None:
            message += f"; the most common other label, {majority!r}, has {share:.0%}"
        message += f" ({len(chosen)} neighbours at similarity >= {min_similarity})."
    return KnnFinding(
        label=label,
        flagged=flagged,
        k=k,
        neighbour_ids=tuple(ids[i] for i in chosen),
        neighbour_labels=n_labels,
        similarities=tuple(float(s) for s in sims[chosen]),
        majority_label=majority,
        majority_share=share,
        agreeing_share=agreeing,
        message=message,
    )
