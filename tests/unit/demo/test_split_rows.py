"""How the demo and the live benchmark split one shuffled order into bootstrap, golden and work rows."""

from __future__ import annotations

from collections import Counter

import pytest

from labelmesh.datasets import Row, load
from labelmesh.demo import split_rows

ROWS = [Row(f"train-{i}", f"text {i}", f"class-{i % 5}") for i in range(100)]


def test_a_count_takes_the_first_rows_of_the_shuffle_and_the_seed_fixes_it() -> None:
    boot, gold, work = split_rows(ROWS, seed=7, bootstrap=10, golden=5, items=20)
    assert (len(boot), len(gold), len(work)) == (10, 5, 20)
    again = split_rows(ROWS, seed=7, bootstrap=10, golden=5, items=20)
    assert [[r.item_id for r in part] for part in again] == [[r.item_id for r in part] for part in (boot, gold, work)]
    assert [r.item_id for r in boot] != [r.item_id for r in split_rows(ROWS, 8, 10, 5, 20)[0]]
    assert len({r.item_id for r in boot + gold + work}) == 35  # no row in two parts


def test_per_class_takes_that_many_of_each_class_and_keeps_the_rest_in_order() -> None:
    boot, gold, work = split_rows(ROWS, seed=3, bootstrap=50, golden=4, items=1000, bootstrap_per_class=2)
    assert Counter(r.label for r in boot) == {f"class-{k}": 2 for k in range(5)}
    assert len(gold) == 4 and len(work) == 100 - 10 - 4  # `bootstrap` is ignored; items caps at what is left
    assert not {r.item_id for r in boot} & {r.item_id for r in gold + work}
    shuffled = [r.item_id for r in split_rows(ROWS, 3, 0, 0, 1000)[2]]
    rest = [i for i in shuffled if i not in {r.item_id for r in boot}]
    assert [r.item_id for r in gold + work] == rest


def test_banking77_with_two_per_class_bootstraps_154_rows() -> None:
    boot, _, _ = split_rows(load("train"), seed=7, bootstrap=500, golden=60, items=100, bootstrap_per_class=2)
    assert len(boot) == 154 and set(Counter(r.label for r in boot).values()) == {2}


def test_per_class_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="bootstrap_per_class"):
        split_rows(ROWS, seed=0, bootstrap=0, golden=0, items=0, bootstrap_per_class=0)
