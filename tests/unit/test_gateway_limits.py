"""The gateway's token buckets on an injected clock: bursts, refill, the retry hint, per-caller and per-action."""

from __future__ import annotations

import pytest

from services.gateway.limits import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_the_caller_waits_for_the_refill() -> None:
    clock = Clock()
    limiter = RateLimiter({"lease": (2.0, 3.0)}, clock=clock)
    assert [limiter.wait("lease", "ann") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait("lease", "ann") == pytest.approx(0.5)  # one token at 2/s
    clock.now += 0.25
    assert limiter.wait("lease", "ann") == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.wait("lease", "ann") == 0.0
    clock.now += 60  # refills up to the burst, no further
    assert [limiter.wait("lease", "ann") for _ in range(4)][-1] > 0


def test_callers_and_actions_have_their_own_buckets_and_a_zero_rate_is_off() -> None:
    clock = Clock()
    limiter = RateLimiter({"lease": (1.0, 1.0), "flag": (1.0, 1.0), "ingest": (0.0, 0.0)}, clock=clock)
    assert limiter.wait("lease", "ann") == 0.0
    assert limiter.wait("lease", "ann") > 0
    assert limiter.wait("lease", "exp") == 0.0
    assert limiter.wait("flag", "ann") == 0.0
    assert all(limiter.wait("ingest", "admin") == 0.0 for _ in range(1000))


def test_the_buckets_kept_are_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter({"lease": (1.0, 1.0)}, clock=clock, max_callers=10)
    for n in range(100):
        limiter.wait("lease", f"a{n}")
    assert len(limiter._buckets) == 10
    assert limiter.wait("lease", "a99") > 0  # the most recent are kept
