"""Uniform draws: in [0, 1), uniform, and each part counts separately."""

import math
from collections import Counter

from labelmesh.draws import uniform_draw

N = 10_000


def four_sigma(rate: float, n: int) -> float:
    return 4 * math.sqrt(rate * (1 - rate) / n)


def test_uniform_draw_is_in_unit_interval_and_roughly_uniform():
    draws = [uniform_draw("x", str(i)) for i in range(N)]
    assert all(0.0 <= d < 1.0 for d in draws)
    deciles = Counter(int(d * 10) for d in draws)
    assert all(abs(deciles[k] / N - 0.1) < four_sigma(0.1, N) for k in range(10))


def test_uniform_draw_separates_its_parts():
    assert uniform_draw("ab", "c") != uniform_draw("a", "bc")
