"""A scan that took t seconds is not due again for t / share seconds."""

import pytest

from labelmesh.runtime import pacing


def test_a_scan_is_spaced_to_its_share_of_the_time(monkeypatch):
    monkeypatch.setattr(pacing.time, "monotonic", lambda: 100.0)
    assert pacing.next_due(99.9) == pytest.approx(100.0 + 0.1 / pacing.SCAN_SHARE)
    assert pacing.next_due(99.0, share=0.5) == 102.0
    assert pacing.next_due(100.0) == 100.0  # an instant scan may run at the next opportunity
