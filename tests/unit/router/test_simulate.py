"""The simulation loop: thresholds learned on one batch govern the next, and auto labels meet the target."""

import math

import pytest

from services.router.domain.simulate import SimItem, simulate
from services.router.domain.thresholds import NO_EVIDENCE
from services.router.domain.tiers import Thresholds, Tier

PHI = (math.sqrt(5) - 1) / 2
SQRT2 = math.sqrt(2) - 1


def underconfident_model(n: int) -> list[SimItem]:
    """Confidences over [0.4, 1); the top-1 is wrong with probability (1 - c) / 4, like DESIGN.md's raw head."""
    items = []
    for i in range(1, n + 1):
        c = 0.4 + 0.6 * ((i * PHI) % 1)
        items.append(SimItem(f"item-{i}", (("a", c), ("b", (1 - c) / 2)), ((i * SQRT2) % 1) >= (1 - c) / 4))
    return items


@pytest.fixture(scope="module")
def reports():
    # 8% spot checks: at the default 5%, eight batches of 5,000 verify too few auto items to move the border.
    return simulate(underconfident_model(40_000), batch_size=5_000, spot_check_rate=0.08)


def test_auto_share_grows_while_auto_error_stays_under_target(reports):
    first, last = reports[0], reports[-1]
    assert first.thresholds == NO_EVIDENCE
    assert Tier.AUTO not in first.tiers, "nothing is auto-accepted before verified pre-labels back a border"
    assert last.thresholds.auto_accept < 0.95
    assert last.tiers[Tier.AUTO] > 0
    auto = errors = 0
    for r in reports:  # the guarantee at every checkpoint, not only on average over the run
        auto += r.tiers.get(Tier.AUTO, 0)
        errors += r.auto_errors
        assert auto == 0 or errors / auto < 0.02, (r.number, errors, auto)
    assert all(sum(r.tiers.values()) == 5_000 for r in reports)


def test_spot_checks_run_at_the_configured_rate():
    (report,) = simulate(underconfident_model(20_000), batch_size=20_000, start=Thresholds(), spot_check_rate=0.10)
    assert report.spot_checks / report.tiers[Tier.AUTO] == pytest.approx(0.10, abs=0.02)
    # Every item outside auto was reviewed, and spot-checked auto items add to that evidence.
    assert report.evidence == 20_000 - report.tiers[Tier.AUTO] + report.spot_checks


def test_each_batch_is_routed_with_the_previous_batch_s_thresholds(reports):
    for before, after in zip(reports, reports[1:]):
        assert after.thresholds.auto_accept == before.changes[0].new
        assert after.thresholds.single_review == before.changes[1].new


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size"):
        simulate([], batch_size=0)
