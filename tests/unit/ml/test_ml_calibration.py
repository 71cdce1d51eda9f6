"""Calibration metrics and calibrators on hand-checked and synthetic data."""

import numpy as np
import pytest

from labelmesh.ml.calibration import (
    IsotonicTopLabel,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    selective_accuracy,
    softmax,
)


def test_ece_matches_hand_computation():
    probs = np.array(
        [
            [0.90, 0.05, 0.05],  # conf .9, correct
            [0.80, 0.10, 0.10],  # conf .8, wrong
            [0.40, 0.35, 0.25],  # conf .4, correct
            [0.40, 0.30, 0.30],  # conf .4, wrong
        ]
    )
    labels = np.array([0, 1, 0, 2])
    # bins (0, .5] and (.5, 1]: high bin |0.5 - 0.85| * 2/4 = .175, low bin |0.5 - 0.4| * 2/4 = .05
    assert expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.225)


def test_ece_bins_are_closed_on_the_right():
    # conf .5 (correct) lands in (0, .5], conf .7 (wrong) in (.5, 1]: .5*.5 + .7*.5 = .6.
    # Were .5 in the upper bin, the gaps would cancel to |1 - 1.2| / 2 = .1.
    probs = np.array([[0.5, 0.5], [0.3, 0.7]])
    assert expected_calibration_error(probs, np.array([0, 0]), n_bins=2) == pytest.approx(0.6)


def test_ece_is_zero_when_confidence_equals_accuracy():
    probs = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, np.array([0, 0, 0, 1])) == pytest.approx(0.0)


def test_nll_and_selective_accuracy():
    probs = np.array([[0.5, 0.5], [0.2, 0.8], [0.99, 0.01]])
    labels = np.array([0, 1, 1])
    assert negative_log_likelihood(probs, labels) == pytest.approx(-(np.log(0.5) + np.log(0.8) + np.log(0.01)) / 3)
    assert selective_accuracy(probs, labels, 0.8) == pytest.approx((2 / 3, 0.5))
    share, acc = selective_accuracy(probs, labels, 0.999)
    assert share == 0.0 and np.isnan(acc)


@pytest.mark.parametrize("true_t", [0.5, 2.5])
def test_fit_temperature_recovers_the_generating_temperature(true_t):
    rng = np.random.default_rng(7)
    logits = rng.normal(0, 3, size=(5000, 10))
    p = softmax(logits, true_t)
    labels = (p.cumsum(axis=1) > rng.random((5000, 1))).argmax(axis=1)
    assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.08)


def test_isotonic_maps_confidence_to_observed_accuracy_and_keeps_argmax():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, size=(4000, 5))
    labels = (softmax(logits).cumsum(axis=1) > rng.random((4000, 1))).argmax(axis=1)
    sharp = softmax(logits, 0.3)  # over-confident version of the true distribution
    iso = IsotonicTopLabel.fit(sharp, labels)
    calibrated = iso.transform(sharp)
    assert (calibrated.argmax(axis=1) == sharp.argmax(axis=1)).all()
    assert np.allclose(calibrated.sum(axis=1), 1.0)
    assert expected_calibration_error(calibrated, labels) < expected_calibration_error(sharp, labels) / 3
