"""Consensus: majority ties, the weighted vote against a brute-force Bayes posterior, Dawid-Skene on a crowd."""

import math
from collections import Counter

import numpy as np
import pytest

from services.qc.domain.consensus import (
    MAX_RELIABILITY,
    dawid_skene,
    decide,
    majority_vote,
    vote_weight,
)


def bayes_posterior(votes, reliability, k, unknown=0.7):
    """Independent check: P(truth = c | votes) under the one-coin model with a uniform prior over k classes."""
    labels = sorted({label for _, label in votes}) + [f"unvoted{i}" for i in range(k - len({v for _, v in votes}))]
    likelihood = {}
    for c in labels:
        p_all = 1.0
        for annotator, label in votes:
            p = min(max(reliability.get(annotator, unknown), 1 / k), MAX_RELIABILITY)
            p_all *= p if label == c else (1 - p) / (k - 1)
        likelihood[c] = p_all
    z = sum(likelihood.values())
    return {c: v / z for c, v in likelihood.items()}


def test_majority_vote_reports_ties_instead_of_breaking_them():
    assert majority_vote([("a", "X"), ("b", "X"), ("c", "Y")]).label == "X"
    tie = majority_vote([("a", "X"), ("b", "Y"), ("c", "Z"), ("d", "Y"), ("e", "X")])
    assert tie.label is None and tie.tied == ("X", "Y") and tie.count == 2 and tie.total == 5
    assert majority_vote([]).label is None
    # One vote per annotator: a changed mind replaces the first answer.
    assert majority_vote([("a", "X"), ("b", "Y"), ("a", "Y")]).label == "Y"


@pytest.mark.parametrize(
    "votes, reliability, k",
    [
        ([("a", "X"), ("b", "X"), ("c", "Y")], {"a": 0.9, "b": 0.9, "c": 0.9}, 2),
        ([("a", "X"), ("b", "X"), ("c", "Y")], {"a": 0.6, "b": 0.65, "c": 0.98}, 10),
        ([("a", "X"), ("b", "Y"), ("c", "Z")], {"a": 0.8}, 77),
        ([("a", "X"), ("b", "X")], {"a": 1.0, "b": 0.01}, 5),
    ],
)
def test_weighted_vote_equals_the_bayes_posterior(votes, reliability, k):
    result = decide(votes, reliability, n_classes=k)
    expected = bayes_posterior(votes, reliability, k)
    for label, p in result.posterior:
        assert p == pytest.approx(expected[label], rel=1e-9)
    assert result.label == max(expected, key=expected.get)
    assert result.confidence == pytest.approx(max(expected.values()), rel=1e-9)


def test_one_reliable_annotator_outweighs_two_weak_ones():
    votes = [("weak1", "X"), ("weak2", "X"), ("expert", "Y")]
    reliability = {"weak1": 0.6, "weak2": 0.6, "expert": 0.98}
    assert majority_vote(votes).label == "X"
    result = decide(votes, reliability, n_classes=10)
    assert result.label == "Y"
    assert result.votes == (("X", 2), ("Y", 1))


def test_worked_numbers_and_resolution():
    three_at_90 = {"a": 0.9, "b": 0.9, "c": 0.9}
    two_to_one = decide([("a", "X"), ("b", "X"), ("c", "Y")], three_at_90)
    assert two_to_one.confidence == pytest.approx(0.9)  # 81 : 9 with K = 2
    assert two_to_one.resolved
    assert decide([("a", "X"), ("b", "X"), ("c", "Y")], three_at_90, min_confidence=0.95).resolved is False
    # With the project's 77 labels two agreeing 90% annotators are strong evidence.
    assert decide([("a", "X"), ("b", "X"), ("c", "Y")], three_at_90, n_classes=77).confidence > 0.99


def test_ties_and_unknown_annotators_go_to_an_expert():
    tie = decide([("a", "X"), ("b", "Y")], {"a": 0.9, "b": 0.9})
    assert not tie.resolved and tie.confidence == pytest.approx(0.5)
    lone_stranger = decide([("new", "X")], {})
    assert lone_stranger.confidence == pytest.approx(0.7)  # the prior for unknown annotators, K = 2
    assert not lone_stranger.resolved
    assert decide([("new", "X")], {}, unknown_reliability=0.9).resolved
    with pytest.raises(ValueError):
        decide([], {})
    with pytest.raises(ValueError):
        decide([("a", "X"), ("b", "Y"), ("c", "Z")], {}, n_classes=2)


def test_worse_than_chance_counts_for_nothing():
    assert vote_weight(0.05, 4) == 0.0
    assert vote_weight(1.0, 4) == vote_weight(MAX_RELIABILITY, 4) < math.inf


def simulated_crowd(n_tasks=300, accuracies=(0.9, 0.88, 0.85, 0.55, 0.3), k=4, seed=3):
    rng = np.random.default_rng(seed)
    truth = {f"t{i}": f"L{rng.integers(k)}" for i in range(n_tasks)}
    records = []
    for w, acc in enumerate(accuracies):
        for task, t in truth.items():
            if rng.random() < acc:
                label = t
            else:
                label = f"L{(int(t[1:]) + rng.integers(1, k)) % k}"
            records.append((task, f"w{w}", label))
    return truth, records, dict(zip((f"w{w}" for w in range(len(accuracies))), accuracies))


@pytest.fixture(scope="module")
def crowd():
    truth, records, true_acc = simulated_crowd()
    return truth, records, true_acc, dawid_skene(records)


def test_dawid_skene_recovers_truth_and_worker_accuracy(crowd):
    truth, records, true_acc, result = crowd
    assert set(result.items) == set(truth)
    ds_acc = np.mean([result.items[t].label == truth[t] for t in truth])
    by_task: dict[str, list] = {}
    for task, worker, label in records:
        by_task.setdefault(task, []).append((worker, label))
    mv = [majority_vote(v) for v in by_task.values()]
    mv_acc = np.mean([m.label == truth[t] for t, m in zip(by_task, mv)])
    assert ds_acc >= mv_acc
    assert ds_acc > 0.95
    for worker, acc in true_acc.items():
        assert result.worker_accuracy[worker] == pytest.approx(acc, abs=0.08)
    assert min(result.worker_accuracy, key=result.worker_accuracy.get) == "w4"
    confident = [p.confidence for p in result.items.values()]
    assert all(0.25 <= c <= 1.0 for c in confident)


def test_dawid_skene_reliabilities_feed_the_per_item_vote(crowd):
    truth, records, _, result = crowd
    reliability = result.worker_accuracy
    by_task: dict[str, list] = {}
    for task, worker, label in records:
        by_task.setdefault(task, []).append((worker, label))
    results = {t: decide(v, reliability, n_classes=4) for t, v in by_task.items()}
    resolved = [t for t, r in results.items() if r.resolved]
    accuracy_resolved = np.mean([results[t].label == truth[t] for t in resolved])
    assert len(resolved) > 0.9 * len(truth)
    assert accuracy_resolved > 0.97
    assert Counter(r.resolved for r in results.values())[False] == len(truth) - len(resolved)
    assert dawid_skene([]).items == {}
