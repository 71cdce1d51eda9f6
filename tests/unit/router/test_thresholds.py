"""Learned thresholds: worked bound numbers, monotonicity, and how the borders move with evidence."""

import math

import pytest
from statsmodels.stats.proportion import proportion_confint

from services.router.domain.thresholds import (
    AUTO_OFF,
    NO_EVIDENCE,
    AUTO_OFF,
    Border,
    Observation,
    ThresholdChange,
    conservative_shift,
    learn_auto_threshold,
    learn_single_threshold,
    learn_thresholds,
    lower_error_bound,
    starting_thresholds,
    upper_error_bound,
)
from services.router.domain.tiers import Thresholds

PHI = (math.sqrt(5) - 1) / 2
SQRT2 = math.sqrt(2) - 1


def stream(n: int, error_at=lambda c: (1 - c) / 4, lo: float = 0.5) -> list[Observation]:
    """n verified predictions, confidences spread evenly over [lo, 1), wrong with probability error_at(c).

    Low-discrepancy sequences instead of a random generator: the evidence is exactly reproducible
    and its error rate matches error_at closely at every scale, so the tests are not flaky.
    """
    out = []
    for i in range(1, n + 1):
        c = lo + (1 - lo) * ((i * PHI) % 1)
        out.append(Observation(c, ((i * SQRT2) % 1) >= error_at(c)))
    return out


def band(lo: float, hi: float, n: int, errors: int, weight: float = 1.0) -> list[Observation]:
    """n observations evenly inside (lo, hi), the `errors` most confident of them wrong."""
    return [Observation(hi - (hi - lo) * (i + 0.5) / n, i >= errors, weight) for i in range(n)]


# --- bounds: worked numbers ------------------------------------------------------------------


def test_zero_errors_in_150_one_sided_clopper_pearson():
    # Closed form for 0 errors: 1 - alpha ** (1 / n).
    assert upper_error_bound(0, 150) == pytest.approx(1 - 0.05 ** (1 / 150), abs=1e-12)
    assert upper_error_bound(0, 150) == pytest.approx(0.019773, abs=1e-6)


def test_two_sided_95_is_the_one_sided_975_bound():
    assert upper_error_bound(0, 150, confidence=0.975) == pytest.approx(0.024292, abs=1e-6)


def test_149_clean_verifications_are_the_minimum_for_a_2_percent_target():
    assert upper_error_bound(0, 149) < 0.02 < upper_error_bound(0, 148)


def test_zero_errors_in_150_one_sided_wilson():
    z2 = 1.6448536269514722**2
    assert upper_error_bound(0, 150, method="wilson") == pytest.approx(z2 / (150 + z2), abs=1e-12)
    assert upper_error_bound(0, 150, method="wilson") == pytest.approx(0.017717, abs=1e-6)


@pytest.mark.parametrize(
    ("errors", "n", "cp", "wilson"),
    [
        (0, 150, 0.019773, 0.017717),
        (1, 300, 0.015715, 0.014801),
        (2, 300, 0.020836, 0.019943),
        (10, 2000, 0.008466, 0.008346),
    ],
)
def test_bounds_match_statsmodels_one_sided(errors, n, cp, wilson):
    # statsmodels is two-sided: its 90% interval's upper end is the one-sided 95% bound.
    assert upper_error_bound(errors, n) == pytest.approx(proportion_confint(errors, n, 0.10, "beta")[1], abs=1e-9)
    assert upper_error_bound(errors, n, method="wilson") == pytest.approx(
        proportion_confint(errors, n, 0.10, "wilson")[1], abs=1e-9
    )
    assert upper_error_bound(errors, n) == pytest.approx(cp, abs=1e-6)
    assert upper_error_bound(errors, n, method="wilson") == pytest.approx(wilson, abs=1e-6)


def test_lower_bound_matches_statsmodels():
    assert lower_error_bound(5, 30) == pytest.approx(proportion_confint(5, 30, 0.10, "beta")[0], abs=1e-9)
    assert lower_error_bound(5, 30) == pytest.approx(0.068056, abs=1e-6)
    assert lower_error_bound(0, 30) == 0.0


def test_bound_edges():
    assert upper_error_bound(0, 0) == 1.0, "no evidence means nothing is known"
    assert upper_error_bound(7, 7) == 1.0
    for bad in [(-1, 10), (11, 10)]:
        with pytest.raises(ValueError, match="errors"):
            upper_error_bound(*bad)
    with pytest.raises(ValueError, match="method"):
        upper_error_bound(1, 10, method="wald")
    with pytest.raises(ValueError, match="confidence"):
        upper_error_bound(1, 10, confidence=1.0)


@pytest.mark.parametrize("method", ["clopper-pearson", "wilson"])
def test_bound_monotonicity(method):
    by_errors = [upper_error_bound(e, 200, method=method) for e in range(0, 20)]
    assert all(a < b for a, b in zip(by_errors, by_errors[1:])), "more errors, higher bound"
    by_n = [upper_error_bound(2, n, method=method) for n in range(10, 2000, 50)]
    assert all(a > b for a, b in zip(by_n, by_n[1:])), "same errors over more items, lower bound"
    by_conf = [upper_error_bound(2, 200, c, method) for c in (0.8, 0.9, 0.95, 0.99)]
    assert all(a < b for a, b in zip(by_conf, by_conf[1:])), "more confidence, wider bound"
    for e in range(1, 20):
        assert lower_error_bound(e, 200, method=method) < e / 200 < upper_error_bound(e, 200, method=method)


def test_clopper_pearson_is_more_conservative_than_wilson():
    assert all(upper_error_bound(e, 300) > upper_error_bound(e, 300, method="wilson") for e in range(0, 15))


# --- auto-accept border ----------------------------------------------------------------------


def test_thin_evidence_keeps_the_seed():
    change = learn_auto_threshold(stream(1000))
    assert (change.old, change.new, change.changed) == (0.95, 0.95, False)
    assert change.reason.startswith("no candidate")


def test_no_evidence_keeps_the_seed_and_says_so():
    change = learn_auto_threshold([])
    assert change.new == 0.95 and "too thin" in change.reason and change.bound == 1.0


def test_threshold_moves_down_as_clean_evidence_accumulates():
    # An under-confident model (error (1-c)/4, as DESIGN.md observed) seen through more and more checks.
    learned = [learn_auto_threshold(stream(n)).new for n in (1000, 2000, 5000, 10_000, 20_000)]
    assert learned == [0.95, 0.91, 0.89, 0.88, 0.86]


def test_the_change_carries_its_evidence():
    evidence = stream(20_000)
    change = learn_auto_threshold(evidence)
    region = [o for o in evidence if o.confidence > change.new]
    assert change.border is Border.AUTO_ACCEPT
    assert (change.n, change.errors) == (len(region), sum(not o.correct for o in region))
    assert change.bound == pytest.approx(upper_error_bound(change.errors, change.n))
    assert change.bound < change.target == 0.02
    assert (change.method, change.confidence) == ("clopper-pearson", 0.95)


def test_threshold_moves_up_when_errors_appear():
    evidence = stream(20_000)
    assert learn_auto_threshold(evidence, 0.86).new == 0.86
    new_failure_mode = [Observation(0.86 + 0.04 * (i + 0.5) / 300, False) for i in range(300)]
    change = learn_auto_threshold(evidence + new_failure_mode, 0.86)
    assert change.new == 0.90 and change.changed


def test_current_border_shown_bad_switches_auto_off():
    spot_checks = [Observation(0.96 + 0.0003 * i, i % 10 != 0) for i in range(120)]  # 10% wrong
    change = learn_auto_threshold(spot_checks + stream(500, lambda c: 1 - c, lo=0.3), 0.95)
    assert change.new == AUTO_OFF == 1.0
    assert "lower bound" in change.reason


def test_refuted_border_can_step_up_instead_of_switching_auto_off():
    # 20% wrong just under 0.90; above it 1% wrong: too few items to prove < 2%, nowhere near refuting it.
    evidence = band(0.80, 0.90, 300, 60) + band(0.90, 1.00, 300, 3)
    assert learn_auto_threshold(evidence, 0.80).new == AUTO_OFF  # the default: off until evidence says otherwise
    change = learn_auto_threshold(evidence, 0.80, step_up_when_refuted=True)
    # The lowest border whose region the evidence does not refute (lower bound <= 2%).
    assert 0.80 < change.new <= 0.90 and "stepped up" in change.reason
    n_wrong = sum(1 for o in evidence if o.confidence > change.new and not o.correct)
    n = sum(1 for o in evidence if o.confidence > change.new)
    assert lower_error_bound(n_wrong, n) <= 0.02
    # With no candidate above that the evidence spares, it still switches off.
    everywhere = band(0.80, 1.00, 600, 120)
    assert learn_auto_threshold(everywhere, 0.80, step_up_when_refuted=True).new == AUTO_OFF
    update = learn_thresholds(evidence, Thresholds(auto_accept=0.80, single_review=0.70), step_up_when_refuted=True)
    assert update.thresholds.auto_accept == change.new


def test_inconclusive_errors_keep_the_current_border():
    # 2% observed: neither provably under nor provably over a 2% target.
    spot_checks = [Observation(0.96 + 0.0002 * i, i % 50 != 0) for i in range(150)]
    assert learn_auto_threshold(spot_checks + band(0.90, 0.95, 100, 0), 0.95).new == 0.95


def test_never_learned_below_the_floor():
    perfect = [Observation(c / 1000, True) for c in range(300, 1000) for _ in range(3)]
    assert learn_auto_threshold(perfect).new == 0.50
    assert learn_auto_threshold(perfect, floor=0.8).new == 0.80


def test_no_extrapolation_into_unverified_confidence():
    clean_high = [Observation(0.97, True)] * 300
    assert learn_auto_threshold(clean_high).new == 0.95
    # One stray verified item far below does not open the gap in between.
    assert learn_auto_threshold(clean_high + [Observation(0.3, True)]).new == 0.95


def test_spot_check_weights_stop_the_reviewed_band_from_hiding_auto_errors():
    # Above 0.95 only 8% of items are checked (weight 12.5); the band just below is fully reviewed.
    reviewed = band(0.90, 0.95, 2000, 10)
    assert learn_auto_threshold(band(0.95, 1.0, 150, 3) + reviewed, 0.95).new == 0.90
    weighted = learn_auto_threshold(band(0.95, 1.0, 150, 3, weight=12.5) + reviewed, 0.95)
    assert weighted.new == 0.95


def test_equal_weights_change_nothing():
    evidence = stream(10_000)
    scaled = [Observation(o.confidence, o.correct, 12.5) for o in evidence]
    assert learn_auto_threshold(scaled) == learn_auto_threshold(evidence)


def test_wilson_learns_no_higher_than_clopper_pearson():
    evidence = stream(10_000)
    assert learn_auto_threshold(evidence, method="wilson").new <= learn_auto_threshold(evidence).new


# --- single-review border --------------------------------------------------------------------


def test_calibrated_model_reproduces_about_the_seed_single_border():
    calibrated = stream(20_000, lambda c: 1 - c, lo=0.3)
    update = learn_thresholds(calibrated, Thresholds())
    assert update.thresholds == Thresholds(auto_accept=0.97, single_review=0.65)
    assert [c.border for c in update.changes] == [Border.AUTO_ACCEPT, Border.SINGLE_REVIEW]


def test_single_border_ignores_auto_accepted_items():
    calibrated = stream(20_000, lambda c: 1 - c, lo=0.3)
    band_only = learn_single_threshold(calibrated, 0.70, auto_accept=0.95)
    pooled = learn_single_threshold(calibrated, 0.70, auto_accept=1.0)  # everything above t, clean items included
    assert band_only.new == 0.67 and pooled.new < band_only.new
    in_band = [o for o in calibrated if 0.67 <= o.confidence <= 0.95]
    assert (band_only.n, band_only.errors) == (len(in_band), sum(not o.correct for o in in_band))


def test_single_border_never_exceeds_auto_and_refuted_band_turns_single_off():
    bad_band = band(0.60, 0.90, 400, 200)  # half the drafts a reviewer would see are wrong
    change = learn_single_threshold(bad_band, 0.70, auto_accept=0.90)
    assert change.new == 0.90 and "lower bound" in change.reason
    assert learn_single_threshold([], 0.97, auto_accept=0.90).new == 0.90


def test_learn_thresholds_clips_single_to_a_lower_auto_and_reports_the_true_old_value():
    update = learn_thresholds(stream(20_000), Thresholds(auto_accept=0.99, single_review=0.95))
    auto, single = update.changes
    assert auto.new == 0.86
    assert single.old == 0.95 and single.new <= 0.86
    assert update.thresholds.single_review <= update.thresholds.auto_accept


@pytest.mark.parametrize("bad", [{"target_error": 0.0}, {"target_error": 1.0}])
def test_bad_targets_are_rejected(bad):
    with pytest.raises(ValueError, match="target"):
        learn_auto_threshold(stream(100), **bad)


def test_bad_observations_are_rejected():
    with pytest.raises(ValueError, match="confidence"):
        Observation(1.2, True)
    with pytest.raises(ValueError, match="weight"):
        Observation(0.9, True, 0.0)


# --- conservative shift ----------------------------------------------------------------------


def test_conservative_shift_raises_both_borders_and_caps_at_one():
    update = conservative_shift(Thresholds(auto_accept=0.90, single_review=0.70), 0.05)
    assert update.thresholds == Thresholds(auto_accept=0.95, single_review=0.75)
    capped = conservative_shift(Thresholds(auto_accept=0.97, single_review=0.96), 0.05).thresholds
    assert capped == Thresholds(auto_accept=1.0, single_review=1.0)
    assert all(isinstance(c, ThresholdChange) and c.changed and "qc flagged" in c.reason for c in update.changes)


def test_conservative_shift_rejects_non_positive_amounts():
    with pytest.raises(ValueError, match="amount"):
        conservative_shift(Thresholds(), 0.0)


def test_the_single_border_has_its_own_floor():
    perfect_high = [Observation(c / 1000, True) for c in range(500, 1000) for _ in range(3)]
    half_right_low = [Observation(c / 1000, c % 3 != 0) for c in range(250, 500) for _ in range(3)]
    seed = Thresholds(auto_accept=0.95, single_review=0.70)
    update = learn_thresholds(perfect_high + half_right_low, seed, target_single_error=0.5,
                              single_floor=0.30)
    assert update.thresholds.auto_accept >= 0.50, "the auto border keeps the common floor"
    assert 0.30 <= update.thresholds.single_review < 0.50
    same_floor = learn_thresholds(perfect_high + half_right_low, seed, target_single_error=0.5)
    assert same_floor.thresholds.single_review == 0.50


# --- the auto border's own band ---------------------------------------------------------------


def test_border_band_stops_the_border_where_pre_labels_get_too_wrong():
    # A calibrated model (error 1 - c) checked 20,000 times: the auto region's average stays under 8% far below
    # the point where the pre-labels at the border itself are wrong 10% of the time.
    evidence = stream(20_000, lambda c: 1 - c, lo=0.5)
    average_only = learn_auto_threshold(evidence, target_error=0.08)
    banded = learn_auto_threshold(evidence, target_error=0.08, border_error=0.10)
    assert average_only.new <= 0.86
    assert banded.new > average_only.new
    in_band = [o for o in evidence if banded.new < o.confidence <= banded.new + 0.05]
    wrong = sum(not o.correct for o in in_band)
    assert upper_error_bound(wrong, len(in_band)) < 0.10
    # One grid step lower, the band is no longer shown to be under 10%.
    lower = round(banded.new - 0.01, 2)
    below = [o for o in evidence if lower < o.confidence <= lower + 0.05]
    assert upper_error_bound(sum(not o.correct for o in below), len(below)) >= 0.10


def test_border_band_needs_evidence_in_the_band_before_moving_down():
    clean_high = [Observation(0.995, True)] * 2000
    thin_band = band(0.90, 0.95, 20, 0)
    assert learn_auto_threshold(clean_high + thin_band, target_error=0.04).new < 0.95
    assert learn_auto_threshold(clean_high + thin_band, target_error=0.04, border_error=0.10).new == 0.95


def test_border_band_refutation_steps_the_border_up():
    # The region above 0.85 averages ~3%, under a 4% target, but the band just above 0.85 is 30% wrong.
    evidence = band(0.85, 0.90, 200, 60) + band(0.90, 1.00, 2000, 0)
    assert learn_auto_threshold(evidence, 0.85, target_error=0.04).new == 0.85
    change = learn_auto_threshold(evidence, 0.85, target_error=0.04, border_error=0.10, step_up_when_refuted=True)
    assert 0.85 < change.new <= 0.90 and change.changed
    in_band = [o for o in evidence if change.new < o.confidence <= change.new + 0.05]
    assert lower_error_bound(sum(not o.correct for o in in_band), len(in_band)) <= 0.10
    update = learn_thresholds(evidence, Thresholds(auto_accept=0.85, single_review=0.5), target_auto_error=0.04,
                              auto_border_error=0.10, step_up_when_refuted=True)
    assert update.thresholds.auto_accept == change.new


def test_border_band_must_be_positive():
    with pytest.raises(ValueError, match="border_band"):
        learn_auto_threshold([], border_error=0.1, border_band=0.0)


# --- starting thresholds ----------------------------------------------------------------------


def test_starting_thresholds_lower_only_the_single_border():
    # Against borders the router's evidence already opened (adopt_every_recommendation), single only.
    opened = Thresholds(auto_accept=0.95, single_review=0.70)
    recommended = Thresholds(auto_accept=0.95, single_review=0.70)
    assert starting_thresholds(recommended, 0.30, in_force=opened) == Thresholds(auto_accept=0.95, single_review=0.30)
    assert starting_thresholds(recommended, None, in_force=opened) == recommended
    low = Thresholds(auto_accept=0.95, single_review=0.20)
    assert starting_thresholds(low, 0.30, in_force=opened) == low, "never raised"
    with pytest.raises(ValueError, match="single_start"):
        starting_thresholds(recommended, -0.1)


def test_a_recommendation_never_opens_auto_accept_on_a_project_without_evidence():
    # The seed's 0.95 passed on by a trainer, or a low border from a first model's held-out items: neither is the
    # router's verified evidence, so a new project's auto-accept stays off (the live demo's 2.9% vs 2%).
    for recommended in (Thresholds(), Thresholds(auto_accept=0.80, single_review=0.60)):
        start = starting_thresholds(recommended, 0.15)
        assert start == Thresholds(auto_accept=AUTO_OFF, single_review=0.15)
        assert starting_thresholds(recommended) == Thresholds(auto_accept=AUTO_OFF,
                                                              single_review=recommended.single_review)


def test_a_recommendation_moves_the_single_border_but_never_the_auto_border():
    learned = Thresholds(auto_accept=0.90, single_review=0.40)
    for auto in (0.85, 0.97, AUTO_OFF):  # lower, higher, or "my held-out set is too small to say" (1.0)
        start = starting_thresholds(Thresholds(auto_accept=auto, single_review=0.30), in_force=learned)
        assert start == Thresholds(auto_accept=0.90, single_review=0.30)
    # The single border never ends above the auto border in force.
    assert starting_thresholds(Thresholds(auto_accept=AUTO_OFF, single_review=0.95), in_force=learned) == Thresholds(
        auto_accept=0.90, single_review=0.90)


def test_no_evidence_opens_auto_accept_only_where_verified_pre_labels_show_it_under_target():
    assert NO_EVIDENCE.auto_accept == AUTO_OFF and NO_EVIDENCE.single_review == 0.70
    assert learn_auto_threshold([], AUTO_OFF).new == AUTO_OFF
    # 148 clean reviews above 0.96 are one short of a 2% bound: still off.
    assert learn_auto_threshold(band(0.96, 0.99, 148, 0), AUTO_OFF).new == AUTO_OFF
    # A model that never says more than 0.99 (every item reviewed while off, so the empty top cells hold
    # nothing): 300 clean reviews in (0.96, 0.99) open the border there, not at the seed's 0.95.
    opened = learn_auto_threshold(band(0.96, 0.99, 300, 0), AUTO_OFF)
    assert 0.96 <= opened.new < 0.99 and opened.changed
    # Reviews far below a gap are no evidence for the gap: only the verified cells are walked.
    gap = band(0.97, 0.99, 300, 0) + band(0.50, 0.60, 300, 0)
    assert learn_auto_threshold(gap, AUTO_OFF).new >= 0.96
    # Evidence that the region is worse than target keeps it off.
    assert learn_auto_threshold(band(0.96, 0.99, 300, 15), AUTO_OFF).new == AUTO_OFF
    # learn_thresholds from NO_EVIDENCE: the single band then ends at the new auto border.
    update = learn_thresholds(band(0.96, 0.99, 300, 0), NO_EVIDENCE)
    assert update.thresholds.auto_accept == opened.new
