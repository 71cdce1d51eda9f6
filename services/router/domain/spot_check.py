"""Which auto-accepted items also go to one human: a deterministic draw at a bounded rate."""

from __future__ import annotations

from labelmesh.draws import uniform_draw

# The issue fixes spot checks to 5-10% of auto-accepted items. The seed's lowest rate: spot checks verify the auto
# border (each weighs 1/rate in the learner), and at 5% they measured it as well as at 8% for 0.015 fewer labels
# per item (bench/results/quality.json). RouterSettings.spot_check_rate defaults to this.
SPOT_CHECK_RATE_MIN = 0.05
SPOT_CHECK_RATE_MAX = 0.10
DEFAULT_SPOT_CHECK_RATE = 0.05


def is_spot_checked(project: str, item_id: str, rate: float = DEFAULT_SPOT_CHECK_RATE, salt: str = "") -> bool:
    """Whether an auto-accepted item also goes to one human; raising the rate only ever adds items."""
    if not SPOT_CHECK_RATE_MIN <= rate <= SPOT_CHECK_RATE_MAX:
        raise ValueError(f"spot-check rate must be in [{SPOT_CHECK_RATE_MIN}, {SPOT_CHECK_RATE_MAX}], got {rate}")
    return uniform_draw("spot-check", project, item_id, salt) < rate


# While a project's auto-accept is off, this share of the items a review would verify where an auto border could
# ever be (confidence above thresholds.DEFAULT_FLOOR) is reviewed first. Annotators are otherwise offered the least
# certain items first, so the confident region, the only one that can open auto-accept, was verified last: the live
# BANKING77 run opened it after 1,000 of 1,500 items had been labelled. RouterSettings.evidence_draw_rate.
DEFAULT_EVIDENCE_DRAW_RATE = 0.20


def is_evidence_draw(project: str, item_id: str, rate: float = DEFAULT_EVIDENCE_DRAW_RATE) -> bool:
    """Whether a reviewed item is verified first while auto-accept is off (a draw independent of spot checks)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"evidence draw rate must be in [0, 1], got {rate}")
    return uniform_draw("evidence-draw", project, item_id) < rate
