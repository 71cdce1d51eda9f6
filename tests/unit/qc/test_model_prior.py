"""The lone reviewer weighed against the model: posterior numbers, the cases that keep or escalate, bad input."""

import pytest

from services.qc.domain.consensus import decide
from services.qc.domain.model_prior import label_posterior

K = 77


def test_without_a_model_it_is_the_one_coin_consensus():
    votes = [("x", "a"), ("y", "a"), ("z", "b")]
    rel = {"x": 0.9, "y": 0.8, "z": 0.85}
    ours = label_posterior((), votes, rel, K, prior_floor=1.0)
    theirs = dict(decide(votes, rel, n_classes=K).posterior)
    assert ours == pytest.approx(theirs)


def test_worked_example_of_a_confirmed_prelabel():
    # Prior 0.6 / 0.3 / 0.1 over three shown labels (no floor); reviewer at 0.9 says "a".
    # Likelihood of "a": 0.9 if a is true; if b or c is true, 0.1 * (0.9 / 2 + 0.1 / 76) (a is one of two wrong shown labels).
    post = label_posterior([("a", 0.6), ("b", 0.3), ("c", 0.1)], [("r", "a")], {"r": 0.9}, K,
                           prior_floor=1e-12)
    wrong = 0.1 * (0.9 / 2 + 0.1 / 76)
    expected = 0.6 * 0.9 / (0.6 * 0.9 + 0.4 * wrong)
    assert post["a"] == pytest.approx(expected, rel=1e-6)
    assert sum(post.values()) <= 1.0 + 1e-12


def test_an_override_of_a_confident_prelabel_stays_in_doubt_and_of_a_shaky_one_is_believed():
    confident = [("a", 0.90), ("b", 0.03), ("c", 0.02)]
    shaky = [("a", 0.45), ("b", 0.40), ("c", 0.05), ("d", 0.04), ("e", 0.03)]
    assert label_posterior(confident, [("r", "b")], {"r": 0.9}, K)["b"] < 0.5
    assert label_posterior(shaky, [("r", "b")], {"r": 0.9}, K)["b"] > 0.95
    # Confirming the confident pre-label is near certain; confirming a 0.2 pre-label is not.
    assert label_posterior(confident, [("r", "a")], {"r": 0.9}, K)["a"] > 0.99
    weak = [("a", 0.2), ("b", 0.18), ("c", 0.17), ("d", 0.15), ("e", 0.1)]
    assert label_posterior(weak, [("r", "a")], {"r": 0.9}, K)["a"] < 0.95


def test_more_mistakes_on_shown_labels_and_less_reliable_reviewers_mean_less_belief_in_an_override():
    top = [("a", 0.6), ("b", 0.3)]
    shares = [label_posterior(top, [("r", "b")], {"r": 0.9}, K, shown_error_share=s)["b"] for s in (0.0, 0.5, 0.9)]
    assert shares[0] > shares[1] > shares[2]
    reliabilities = [label_posterior(top, [("r", "b")], {"r": p}, K)["b"] for p in (0.97, 0.9, 0.7)]
    assert reliabilities[0] > reliabilities[1] > reliabilities[2]
    # An annotator with no record gets consensus' unknown reliability (0.70).
    assert label_posterior(top, [("new", "b")], {}, K)["b"] == pytest.approx(reliabilities[2])


def test_a_label_outside_the_top_k_and_the_latest_vote_per_annotator():
    top = [("a", 0.5), ("b", 0.3), ("c", 0.15)]
    post = label_posterior(top, [("r", "b"), ("r", "zzz")], {"r": 0.9}, K)
    assert "zzz" in post and set(post) == {"a", "b", "c", "zzz"}
    assert sum(post.values()) < 1.0
    # A reviewer who errs rarely lands on an unshown label, so naming one beats the model's top-1, but the
    # model gave it ~0.07%: not enough for one reviewer alone to make it final at 0.95.
    assert post["a"] < post["zzz"] < 0.95


def test_bad_input():
    with pytest.raises(ValueError, match="n_classes"):
        label_posterior([("a", 0.5)], [("r", "b")], {}, 1)
    with pytest.raises(ValueError, match="more than n_classes"):
        label_posterior([("a", 0.5), ("b", 0.3)], [("r", "c")], {}, 2)
    with pytest.raises(ValueError, match="shown_error_share"):
        label_posterior([("a", 0.5)], [("r", "b")], {}, K, shown_error_share=1.0)
    with pytest.raises(ValueError, match="probabilities"):
        label_posterior([("a", 1.5)], [("r", "b")], {}, K)
