"""Drift: stable annotators stay quiet; a switch to one class, a random answerer and rushing are caught."""

from collections import Counter

import numpy as np
import pytest
from scipy.stats import chi2_contingency, mannwhitneyu

from services.qc.domain.drift import DriftKind, first_significant, label_shift, scan, time_shift

PRIOR = [0.5, 0.2, 0.15, 0.1, 0.05]
K = len(PRIOR)


def annotator(n, rng, accuracy=0.9, prior=PRIOR):
    """Labels of an annotator who is right with `accuracy` on items drawn from prior, else uniformly wrong."""
    truth = rng.choice(len(prior), n, p=prior)
    return [f"c{t}" if rng.random() < accuracy else f"c{(t + rng.integers(1, len(prior))) % len(prior)}"
            for t in truth]


def times(n, rng, median_ms=8000.0):
    return rng.lognormal(np.log(median_ms), 0.4, n).tolist()


@pytest.fixture(scope="module")
def crowd():
    return Counter(annotator(3000, np.random.default_rng(1)))


def test_stable_annotators_are_not_flagged(crowd):
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        findings = scan(annotator(600, rng), times_ms=times(600, rng), crowd=crowd)
        assert {f.kind for f in findings} == set(DriftKind)
        assert first_significant(findings) is None, [f.message for f in findings if f.significant]


def test_switch_to_one_class_is_flagged_against_own_baseline(crowd):
    rng = np.random.default_rng(7)
    labels = annotator(300, rng) + ["c2"] * 300
    findings = scan(labels, crowd=crowd)
    first = first_significant(findings, DriftKind.BASELINE)
    assert first is not None and first.most_increased == "c2"
    assert 300 < first.end <= 350  # visible once a quarter of the window is the new habit
    assert first.statistic > 0.3 and first.p_value < 1e-4
    assert "'c2' went from" in first.message
    assert all(not f.significant for f in findings if f.end <= 300)


def test_random_answerer_is_flagged_against_the_crowd_not_against_themselves(crowd):
    rng = np.random.default_rng(8)
    labels = [f"c{v}" for v in rng.integers(0, K, 600)]
    findings = scan(labels, crowd=crowd)
    first = first_significant(findings, DriftKind.CROWD)
    assert first is not None and first.end == 100  # the very first window
    # They are consistently random, so nothing changes against their own start.
    assert first_significant(findings, DriftKind.BASELINE) is None


def test_random_answerer_is_invisible_in_distribution_when_classes_are_balanced():
    # The documented limit: with equally common classes a random answerer has the crowd's distribution.
    rng = np.random.default_rng(9)
    balanced = [0.2] * 5
    crowd = Counter(annotator(3000, rng, prior=balanced))
    labels = [f"c{v}" for v in rng.integers(0, K, 600)]
    assert first_significant(scan(labels, crowd=crowd)) is None


def test_rushing_is_a_time_shift():
    rng = np.random.default_rng(10)
    ms = times(300, rng) + times(300, rng, median_ms=2500.0)
    findings = scan(annotator(600, rng), times_ms=ms)
    first = first_significant(findings, DriftKind.TIME)
    assert first is not None and first.statistic < 1 / 1.5 and 300 < first.end <= 350
    slower = time_shift(times(100, rng, 20000.0), times(100, rng))
    assert slower.significant and slower.statistic > 1.5


def test_time_shift_uses_mann_whitney_and_needs_a_material_change():
    rng = np.random.default_rng(11)
    base, window = times(200, rng), times(200, rng, median_ms=9000.0)
    finding = time_shift(window, base, alpha=0.05)
    assert finding.p_value == pytest.approx(mannwhitneyu(window, base, alternative="two-sided").pvalue)
    assert finding.statistic == pytest.approx(np.median(window) / np.median(base))
    assert not finding.significant  # ~12% slower is within the 1.5x band, whatever the p-value


def test_chi_square_matches_scipy_when_no_pooling_is_needed():
    window = ["a"] * 35 + ["b"] * 40 + ["c"] * 25
    reference = {"a": 120, "b": 50, "c": 30}
    finding = label_shift(window, reference)
    table = np.array([[35, 40, 25], [120, 50, 30]])
    assert finding.p_value == pytest.approx(chi2_contingency(table, correction=False).pvalue)
    assert finding.most_increased == "b"
    same = label_shift(window, Counter({"a": 120, "b": 50, "c": 30}).elements())
    assert same.p_value == finding.p_value and same.statistic == finding.statistic


def test_sparse_labels_are_pooled_into_a_testable_table():
    # 77 classes, 100 labels: almost every class is too rare to test alone.
    rng = np.random.default_rng(12)
    reference = Counter(f"intent{v}" for v in rng.integers(0, 77, 3000))
    fine = label_shift([f"intent{v}" for v in rng.integers(0, 77, 100)], reference)
    stuck = label_shift(["intent5"] * 60 + [f"intent{v}" for v in rng.integers(0, 77, 40)], reference)
    assert not fine.significant and 0 < fine.p_value <= 1
    assert stuck.significant and stuck.most_increased == "intent5"
    assert label_shift(["x"] * 10, ["x"] * 30).p_value == 1.0  # one label on both sides: nothing to test


def test_pooling_does_not_manufacture_drift_over_many_classes():
    # Regression: ordering rare labels by their split built all-window and all-baseline bins.
    prior = np.random.default_rng(13).dirichlet([5.0] * 77)
    crowd = Counter(annotator(5000, np.random.default_rng(14), prior=prior))
    for seed in range(10):
        labels = annotator(600, np.random.default_rng(200 + seed), prior=prior)
        assert first_significant(scan(labels, crowd=crowd)) is None
    drifted = annotator(300, np.random.default_rng(15), prior=prior) + ["c3"] * 300
    assert first_significant(scan(drifted, crowd=crowd)).most_increased == "c3"
