"""A scan that took t seconds is not due again for t / share seconds; a failed pass is tried again sooner."""

import pytest

from labelmesh.runtime import pacing


def test_a_scan_is_spaced_to_its_share_of_the_time(monkeypatch):
    monkeypatch.setattr(pacing.time, "monotonic", lambda: 100.0)
    assert pacing.next_due(99.9) == pytest.approx(100.0 + 0.1 / pacing.SCAN_SHARE)
    assert pacing.next_due(99.0, share=0.5) == 102.0
    assert pacing.next_due(100.0) == 100.0  # an instant scan may run at the next opportunity


def test_a_failed_pass_is_tried_again_sooner_then_less_often_up_to_its_period():
    assert pacing.after_failures(0, 0.5, 5.0) == 5.0  # a pass that worked waits its period
    assert [pacing.after_failures(n, 0.5, 5.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 5.0]
    assert pacing.after_failures(10_000, 0.5, 3600.0) == 3600.0  # no overflow after a long outage
    assert pacing.after_failures(1, 10.0, 5.0) == 5.0  # never later than the period itself
