"""Golden-task schedule: right rate per annotator, deterministic, no rhythm, unpredictable without the salt."""

import math
from collections import Counter

import pytest

from services.gateway.domain.golden import choose_golden, should_inject_golden

N = 10_000


def four_sigma(rate: float, n: int) -> float:
    return 4 * math.sqrt(rate * (1 - rate) / n)


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


def test_golden_rate_settles_after_the_warmup():
    from services.gateway.domain.golden import golden_rate_for

    assert golden_rate_for(0, 0.05, 0.02, 400) == 0.05
    assert golden_rate_for(399, 0.05, 0.02, 400) == 0.05
    assert golden_rate_for(400, 0.05, 0.02, 400) == 0.02
    assert golden_rate_for(10_000, 0.0, 0.02, 400) == 0.0, "golden tasks off stays off"
    assert golden_rate_for(500, 0.05, 0.2, 400) == 0.05, "settling never raises the rate"
    with pytest.raises(ValueError, match="task_number"):
        golden_rate_for(-1)
    with pytest.raises(ValueError, match="settled_rate"):
        golden_rate_for(0, 0.05, 1.5)
