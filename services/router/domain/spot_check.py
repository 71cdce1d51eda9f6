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
