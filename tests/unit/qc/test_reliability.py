"""Reliability: golden evidence on a Dawid-Skene prior, which needs enough items to count."""

import pytest

from services.qc.domain.golden import smoothed_accuracy
from services.qc.domain.reliability import reliability


def test_without_dawid_skene_it_is_the_golden_smoothed_accuracy():
    assert reliability(3, 3) == pytest.approx(smoothed_accuracy(3, 3))
    assert reliability(0, 0) == pytest.approx(0.8)


def test_dawid_skene_moves_the_prior_only_with_enough_items():
    assert reliability(0, 0, 0.1, ds_items=5) == pytest.approx(0.8)
    assert reliability(0, 0, 0.1, ds_items=50) == pytest.approx(0.1)
    assert reliability(0, 0, 1.0, ds_items=50) == pytest.approx(0.99)


def test_golden_answers_outweigh_the_prior_as_they_accumulate():
    low_prior = reliability(95, 100, 0.2, ds_items=50)
    assert low_prior > 0.9
    assert reliability(2, 2, 0.2, ds_items=50) < 0.5
