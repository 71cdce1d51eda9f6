"""Golden accuracy: interval values against statsmodels and scipy, and the flag rule's worked numbers."""

import math

import pytest
from scipy.stats import beta
from statsmodels.stats.proportion import proportion_confint

from services.qc.domain.golden import first_flag_at, golden_accuracy, should_flag, smoothed_accuracy


def test_bounds_are_one_sided_95_percent_clopper_pearson():
    acc = golden_accuracy(7, 10)
    assert acc.accuracy == 0.7
    assert acc.upper == pytest.approx(beta.ppf(0.95, 8, 3), abs=1e-12)
    assert acc.lower == pytest.approx(beta.ppf(0.05, 7, 4), abs=1e-12)
    assert (acc.lower, acc.upper) == pytest.approx(proportion_confint(7, 10, alpha=0.10, method="beta"))


def test_wilson_is_tighter_than_clopper_pearson():
    cp, wilson = golden_accuracy(12, 20), golden_accuracy(12, 20, method="wilson")
    assert (wilson.lower, wilson.upper) == pytest.approx(proportion_confint(12, 20, alpha=0.10, method="wilson"))
    assert cp.lower < wilson.lower and wilson.upper < cp.upper


def test_edges_and_no_evidence():
    assert golden_accuracy(0, 10).lower == 0.0
    assert golden_accuracy(10, 10).upper == 1.0
    empty = golden_accuracy(0, 0)
    assert (empty.lower, empty.upper) == (0.0, 1.0) and math.isnan(empty.accuracy)
    assert not should_flag(empty, min_evidence=1)
    with pytest.raises(ValueError):
        golden_accuracy(3, 2)


def test_flag_rule_worked_numbers():
    assert should_flag(golden_accuracy(0, 10))  # upper 0.26
    assert should_flag(golden_accuracy(5, 10))  # upper 0.78
    assert not should_flag(golden_accuracy(6, 10))  # upper 0.85: could still be an 80% annotator
    assert golden_accuracy(5, 10).upper == pytest.approx(0.778, abs=1e-3)


def test_two_unlucky_items_flag_nobody():
    two_misses = golden_accuracy(0, 2)
    assert two_misses.accuracy == 0.0
    assert not should_flag(two_misses)
    # Even without the minimum-evidence guard the bound alone protects a single miss.
    assert not should_flag(golden_accuracy(0, 1), min_evidence=1)


def test_when_a_random_and_a_good_annotator_are_flagged():
    random_answerer = [i % 77 == 0 for i in range(200)]  # right 1 time in 77
    assert first_flag_at(random_answerer) == 10
    good = [i % 10 != 0 for i in range(1, 501)]  # 90% accurate, never flagged over 500 golden items
    assert first_flag_at(good) is None
    degrading = [True] * 40 + [i % 2 == 0 for i in range(200)]  # drops from 100% to 50%
    flagged = first_flag_at(degrading)
    assert flagged is not None and 40 < flagged < 240
    assert should_flag(golden_accuracy(sum(degrading[:flagged]), flagged))
    assert not should_flag(golden_accuracy(sum(degrading[: flagged - 1]), flagged - 1))


def test_smoothed_accuracy_shrinks_small_samples_towards_the_prior():
    assert smoothed_accuracy(0, 0) == 0.8
    assert smoothed_accuracy(3, 3) == pytest.approx((3 + 3.2) / 7)
    assert smoothed_accuracy(900, 1000) == pytest.approx(0.9, abs=0.001)
