"""Active-learning scores: margin, entropy and least-confident ordering, from full or truncated distributions."""

from __future__ import annotations

import numpy as np
import pytest

from labelmesh.ml.active import (
    Strategy,
    informativeness,
    most_informative,
    review_priority,
    top_k_informativeness,
)

PROBS = np.array([
    [0.98, 0.01, 0.01],  # sure
    [0.45, 0.44, 0.11],  # torn between two labels
    [0.34, 0.33, 0.33],  # no idea at all
    [0.70, 0.20, 0.10],  # fairly sure
])


def test_margin_puts_close_calls_first() -> None:
    scores = informativeness(PROBS, "margin")
    assert scores == pytest.approx([1 - 0.97, 1 - 0.01, 1 - 0.01, 1 - 0.5])
    assert most_informative(PROBS, 4, Strategy.MARGIN).tolist() == [1, 2, 3, 0]  # tie keeps input order


def test_entropy_puts_flat_distributions_first_and_is_normalised() -> None:
    scores = informativeness(PROBS, "entropy")
    assert most_informative(PROBS, 2, "entropy").tolist() == [2, 1]
    assert scores[2] == pytest.approx(1.0, abs=1e-3)  # near-uniform over 3 classes
    assert np.all((scores >= 0) & (scores <= 1))


def test_least_confident() -> None:
    assert informativeness(PROBS, "least_confident") == pytest.approx([0.02, 0.55, 0.66, 0.30])


def test_top_k_matches_the_full_distribution_for_margin() -> None:
    full = np.array([[0.6, 0.25, 0.1, 0.05]])
    assert top_k_informativeness([0.6, 0.25], 4, "margin") == pytest.approx(informativeness(full, "margin")[0])
    # Entropy from a truncated list lumps the missing mass into one outcome: a lower bound.
    assert top_k_informativeness([0.6, 0.25], 4, "entropy") <= informativeness(full, "entropy")[0] + 1e-12
    assert top_k_informativeness([], 77) == 1.0  # nothing known: worth a look
    assert top_k_informativeness([0.6, 0.4000001], 2) == pytest.approx(0.8, abs=1e-6)  # rounding tolerated


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        informativeness(np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="sum"):
        informativeness(np.array([[0.9, 0.9]]))
    with pytest.raises(ValueError):
        informativeness(PROBS, "loudest")
    with pytest.raises(ValueError, match="non-negative"):
        most_informative(PROBS, -1)


def test_review_priority_puts_spot_checks_then_close_calls_first() -> None:
    sure, torn, unknown = review_priority([0.97, 0.02]), review_priority([0.5, 0.45]), review_priority([])
    assert unknown == 1.0 > torn > sure
    assert review_priority([0.999], spot_check=True) > unknown
    assert review_priority([0.8]) == pytest.approx(0.2)  # one label listed: the runner-up had at most 0


def test_review_priority_is_the_top_k_margin() -> None:
    rng = np.random.default_rng(7)
    cases: list[list[float]] = [[0.6, 0.4000001], [0.5], [1.0, 0.0], [0.3, 0.3, 0.3], [-0.1, 1.2]]
    for n in (1, 2, 3, 5, 9, 12):
        for _ in range(200):
            probs = rng.dirichlet(np.ones(n + 3))[:n]
            cases.append(sorted((rng.permutation(probs) * rng.choice([1.0, 1.0 + 1e-7])).tolist(), reverse=True))
    cases.append([0.2, 0.7, 0.1])  # not sorted: the two best are found, wherever they are
    for top_k in cases:
        assert review_priority(top_k) == pytest.approx(
            top_k_informativeness(top_k, max(2, len(top_k)), "margin"), abs=1e-12), top_k
