"""Confident learning on blobs with injected label noise, compared with cleanlab on the same probabilities."""

import numpy as np
import pytest
from cleanlab.count import compute_confident_joint, get_confident_thresholds
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from sklearn.datasets import make_blobs

from services.qc.domain.label_errors import find_label_errors, label_error_pass, out_of_fold_probabilities

N, K, NOISE = 1000, 5, 100


@pytest.fixture(scope="module")
def noisy():
    x, truth = make_blobs(n_samples=N, centers=K, n_features=8, cluster_std=2.0, random_state=0)
    rng = np.random.default_rng(0)
    injected = rng.choice(N, NOISE, replace=False)
    given = truth.copy()
    given[injected] = (truth[injected] + rng.integers(1, K, NOISE)) % K
    labels = [f"c{v}" for v in given]
    probs, classes = out_of_fold_probabilities(x, labels)
    report = find_label_errors(labels, probs, classes, ids=[f"item-{i}" for i in range(N)])
    return labels, given, set(injected.tolist()), probs, classes, report


def precision_recall(found, injected):
    hits = len(set(found) & injected)
    return hits / len(found), hits / len(injected)


def test_findings_agree_with_cleanlab_and_catch_injected_errors(noisy):
    labels, given, injected, probs, classes, report = noisy
    assert classes == tuple(f"c{j}" for j in range(K))
    ours = set(report.indices)
    theirs = set(np.flatnonzero(find_label_issues(given, probs)).tolist())  # cleanlab's default filter
    jaccard = len(ours & theirs) / len(ours | theirs)
    p_ours, r_ours = precision_recall(ours, injected)
    p_cl, r_cl = precision_recall(theirs, injected)
    summary = f"jaccard={jaccard:.3f} ours P={p_ours:.3f} R={r_ours:.3f} cleanlab P={p_cl:.3f} R={r_cl:.3f}"
    assert jaccard >= 0.9, summary  # measured 0.938
    assert p_ours >= 0.95 and r_ours >= 0.85, summary  # measured P=1.000 R=0.910
    assert p_cl >= 0.95 and r_cl >= 0.85, summary  # measured P=0.990 R=0.960
    # Against cleanlab's own confident-joint filter (the same method) the sets coincide.
    same_method = set(np.flatnonzero(find_label_issues(given, probs, filter_by="confident_learning")).tolist())
    assert len(ours & same_method) / len(ours | same_method) >= 0.98, summary


def test_thresholds_and_confident_joint_match_cleanlab(noisy):
    _, given, _, probs, _, report = noisy
    assert report.thresholds == pytest.approx(get_confident_thresholds(given, probs).tolist(), abs=1e-12)
    assert np.array_equal(np.array(report.confident_joint), compute_confident_joint(given, probs, calibrate=False))
    joint = np.array(report.confident_joint)
    assert joint.trace() > 0.8 * joint.sum()  # most items are confidently what they are labelled


def test_ranking_puts_injected_errors_first(noisy):
    labels, given, injected, probs, classes, report = noisy
    scores = [issue.self_confidence for issue in report.issues]
    assert scores == sorted(scores)
    top = report.indices[:50]
    assert precision_recall(top, injected)[0] == 1.0
    first = report.issues[0]
    assert first.item_id == f"item-{first.index}" and first.given == labels[first.index]
    assert first.suggested != first.given
    by_margin = find_label_errors(labels, probs, classes, rank_by="normalized_margin")
    assert set(by_margin.indices) == set(report.indices)
    cl_margin = get_label_quality_scores(given, probs, method="normalized_margin")
    assert [i.normalized_margin for i in by_margin.issues] == pytest.approx(cl_margin[list(by_margin.indices)])
    assert list(by_margin.indices) == sorted(by_margin.indices, key=lambda i: (cl_margin[i], i))


def test_clean_labels_give_few_issues():
    x, y = make_blobs(n_samples=300, centers=3, n_features=4, cluster_std=0.5, random_state=1)
    labels = [f"c{v}" for v in y]
    probs, classes = out_of_fold_probabilities(x, labels)
    assert find_label_errors(labels, probs, classes).issues == ()


def test_bad_input_is_refused():
    x = np.zeros((6, 2))
    with pytest.raises(ValueError, match="too few items"):
        out_of_fold_probabilities(x, ["a"] * 5 + ["b"])
    with pytest.raises(ValueError):
        find_label_errors(["a", "z"], np.full((2, 2), 0.5), ("a", "b"))
    with pytest.raises(ValueError):
        find_label_errors(["a", "b"], np.full((2, 3), 0.3), ("a", "b"))


def test_the_whole_pass_skips_classes_too_small_to_cross_validate(noisy):
    labels, given, injected, probs, classes, report = noisy
    x, _ = make_blobs(n_samples=N, centers=K, n_features=8, cluster_std=2.0, random_state=0)
    # Three items of a brand-new label cannot be cross-validated: they are listed, not judged.
    x_plus = np.vstack([x, x[:3]])
    labels_plus = labels + ["brand_new"] * 3
    ids = [f"item-{i}" for i in range(N + 3)]
    full = label_error_pass(x_plus, labels_plus, ids)
    assert full.skipped == (N, N + 1, N + 2)
    assert full.indices == report.indices  # the same folds over the same kept items
    assert [i.item_id for i in full.issues] == [f"item-{i}" for i in full.indices]
    assert label_error_pass(x[:4], labels[:4], ids[:4]).skipped == (0, 1, 2, 3)
