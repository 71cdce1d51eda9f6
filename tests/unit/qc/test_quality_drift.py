"""Quality drift: steady annotators stay quiet; a drop in agreement with the reference and a random answerer are caught."""

import numpy as np
import pytest
from scipy.stats import fisher_exact

from services.qc.domain.quality_drift import agreement_drop, first_drop, scan_agreement


def outcomes(n, rate, rng):
    return (rng.random(n) < rate).tolist()


def test_steady_annotators_are_not_flagged():
    for seed in range(30):
        rng = np.random.default_rng(seed)
        findings = scan_agreement(outcomes(400, 0.6, rng), crowd=(1200, 2000))
        assert findings and first_drop(findings) is None, [f.message for f in findings if f.significant]


def test_degrading_annotator_is_flagged_soon_after_the_change():
    rng = np.random.default_rng(3)
    seq = outcomes(150, 0.65, rng) + outcomes(250, 0.25, rng)
    findings = scan_agreement(seq, crowd=(1300, 2000))
    first = first_drop(findings, "baseline")
    assert first is not None and 150 < first.end <= 200
    assert all(not f.significant for f in findings if f.end <= 150)
    assert first.reference_rate - first.rate >= 0.2


def test_random_answerer_is_flagged_against_the_crowd_in_the_first_window():
    rng = np.random.default_rng(4)
    findings = scan_agreement(outcomes(60, 1 / 77, rng), crowd=(1300, 2000))
    first = first_drop(findings)
    assert first is not None and first.against == "crowd" and first.end == 50


def test_p_value_is_scipys_one_sided_fisher():
    finding = agreement_drop([True] * 10 + [False] * 40, 60, 100)
    expected = fisher_exact([[10, 40], [60, 40]], alternative="less").pvalue
    assert finding.p_value == pytest.approx(expected)
    assert finding.significant and "20%" in finding.message and "60%" in finding.message


def test_a_rise_never_flags():
    assert not agreement_drop([True] * 50, 10, 100).significant


def test_bad_input_is_rejected():
    with pytest.raises(ValueError):
        agreement_drop([], 1, 2)
    with pytest.raises(ValueError):
        agreement_drop([True], 3, 2)
    with pytest.raises(ValueError):
        scan_agreement([True], window=0)
