"""Spot-check draws: right rates, deterministic on replay, independent per project and salt."""

import math

import pytest

from services.router.domain.spot_check import DEFAULT_SPOT_CHECK_RATE, is_spot_checked

N = 10_000


def four_sigma(rate: float, n: int) -> float:
    return 4 * math.sqrt(rate * (1 - rate) / n)


@pytest.mark.parametrize("rate", [DEFAULT_SPOT_CHECK_RATE, 0.08, 0.10])
def test_spot_check_rate_within_tolerance_over_10000_ids(rate):
    share = sum(is_spot_checked("banking", f"item-{i}", rate) for i in range(N)) / N
    assert abs(share - rate) < four_sigma(rate, N)


def test_spot_check_is_deterministic_for_replays():
    first = [is_spot_checked("banking", f"item-{i}", salt="s1") for i in range(2000)]
    again = [is_spot_checked("banking", f"item-{i}", salt="s1") for i in range(2000)]
    assert first == again and any(first)


def test_salt_and_project_change_the_selection():
    base = {i for i in range(N) if is_spot_checked("banking", f"item-{i}")}
    salted = {i for i in range(N) if is_spot_checked("banking", f"item-{i}", salt="other")}
    other_project = {i for i in range(N) if is_spot_checked("support", f"item-{i}")}
    # Independent 5% selections overlap on about 0.25% of ids, far from the 5% a shared draw would give.
    assert len(base & salted) / N < 0.02
    assert len(base & other_project) / N < 0.02


def test_raising_the_rate_only_adds_items():
    low = {i for i in range(N) if is_spot_checked("banking", f"item-{i}", 0.05)}
    high = {i for i in range(N) if is_spot_checked("banking", f"item-{i}", 0.10)}
    assert low < high


@pytest.mark.parametrize("rate", [0.0, 0.04, 0.11, 1.0])
def test_spot_check_rate_outside_5_to_10_percent_is_rejected(rate):
    with pytest.raises(ValueError, match="spot-check rate"):
        is_spot_checked("banking", "item-1", rate)
