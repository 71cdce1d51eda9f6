"""Spot-check and golden-injection draws: right rates, deterministic on replay, unpredictable without the salt."""

import math
from collections import Counter

import pytest

from services.router.domain.spot_check import (
    DEFAULT_SPOT_CHECK_RATE,
    choose_golden,
    is_spot_checked,
    should_inject_golden,
    uniform_draw,
)

N = 10_000


def four_sigma(rate: float, n: int) -> float:
    return 4 * math.sqrt(rate * (1 - rate) / n)


@pytest.mark.parametrize("rate", [0.05, DEFAULT_SPOT_CHECK_RATE, 0.10])
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
    # Independent 8% selections overlap on about 0.64% of ids, far from the 8% a shared draw would give.
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


def test_uniform_draw_is_in_unit_interval_and_roughly_uniform():
    draws = [uniform_draw("x", str(i)) for i in range(N)]
    assert all(0.0 <= d < 1.0 for d in draws)
    deciles = Counter(int(d * 10) for d in draws)
    assert all(abs(deciles[k] / N - 0.1) < four_sigma(0.1, N) for k in range(10))


def test_uniform_draw_separates_its_parts():
    assert uniform_draw("ab", "c") != uniform_draw("a", "bc")


def test_golden_rate_per_annotator_and_determinism():
    rate = 0.05
    schedule = [should_inject_golden("ann-7", n, rate, salt="secret") for n in range(N)]
    assert abs(sum(schedule) / N - rate) < four_sigma(rate, N)
    assert schedule == [should_inject_golden("ann-7", n, rate, salt="secret") for n in range(N)]


def test_golden_schedule_has_no_fixed_rhythm():
    positions = [n for n in range(N) if should_inject_golden("ann-7", n, 0.05, salt="secret")]
    gaps = {b - a for a, b in zip(positions, positions[1:])}
    assert len(gaps) > 10, "a periodic schedule would let annotators spot golden tasks"


def test_golden_schedule_differs_per_annotator_and_salt():
    a = [should_inject_golden("ann-1", n, 0.2, salt="s") for n in range(500)]
    b = [should_inject_golden("ann-2", n, 0.2, salt="s") for n in range(500)]
    c = [should_inject_golden("ann-1", n, 0.2, salt="t") for n in range(500)]
    assert a != b and a != c


def test_golden_rate_edges():
    assert not any(should_inject_golden("a", n, 0.0) for n in range(1000))
    assert all(should_inject_golden("a", n, 1.0) for n in range(1000))
    with pytest.raises(ValueError, match="task_number"):
        should_inject_golden("a", -1)
    with pytest.raises(ValueError, match="golden rate"):
        should_inject_golden("a", 0, 1.5)


def test_choose_golden_skips_seen_items_and_is_deterministic():
    golden = [f"g{i}" for i in range(5)]
    pick = choose_golden("ann-1", 3, golden, seen={"g0", "g1"}, salt="s")
    assert pick in {"g2", "g3", "g4"}
    assert pick == choose_golden("ann-1", 3, list(reversed(golden)), seen={"g1", "g0"}, salt="s")
    assert choose_golden("ann-1", 3, golden, seen=golden) is None


def test_choose_golden_spreads_over_candidates():
    golden = [f"g{i}" for i in range(4)]
    picks = Counter(choose_golden("ann-1", n, golden) for n in range(4000))
    assert set(picks) == set(golden)
    assert all(abs(c / 4000 - 0.25) < four_sigma(0.25, 4000) for c in picks.values())
