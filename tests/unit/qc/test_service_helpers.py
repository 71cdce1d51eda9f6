"""The qc service's small pure helpers: when a periodic pass is due, and the labelled-embedding index."""

import numpy as np

from services.qc.domain.tally import crossed as _crossed
from services.qc.domain.tally import growing_pass as _growing_pass
from labelmesh.neighbours import LabelledIndex


def test_a_pass_is_due_when_the_counter_passes_a_multiple():
    assert _crossed(100, 1, 100) and _crossed(130, 40, 100) and _crossed(250, 200, 100)
    assert not _crossed(99, 10, 100) and not _crossed(130, 20, 100)
    assert not _crossed(100, 0, 100) and not _crossed(100, 1, 0)


def test_index_replaces_relabelled_items_and_skips_zero_vectors():
    index = LabelledIndex()
    index.upsert("a", "x", np.array([1.0, 0.0], np.float32))
    index.upsert("b", "y", np.array([0.0, 1.0], np.float32))
    matrix, labels, ids = index.rows()
    assert matrix.shape == (2, 2) and labels == ["x", "y"] and ids == ["a", "b"]
    index.upsert("a", "z", np.array([1.0, 1.0], np.float32))
    index.upsert("c", "x", np.zeros(2, np.float32))
    matrix, labels, ids = index.rows()
    assert len(index) == 2 and labels == ["z", "y"]
    assert np.allclose(matrix[0], [2 ** -0.5, 2 ** -0.5]), "rows are stored as unit vectors"


def test_an_empty_index_has_no_rows():
    matrix, labels, ids = LabelledIndex().rows()
    assert matrix.shape == (0, 0) and labels == [] and ids == []


def test_label_error_passes_come_every_n_while_small_then_when_the_project_grew_by_a_share():
    due = [n for n in range(1, 20_001) if _growing_pass(n, 1, 500, 0.25) is not None]
    assert due[:5] == [500, 1000, 1500, 2000, 2500]  # multiples of 500 while 25% growth is less than 500
    assert due[5:8] == [3125, 3907, 4884]  # then 25% more each time
    assert len(due) == 14 and due[-1] == 18_634, "geometric: 14 passes up to 20,000 items instead of 40"
    assert [_growing_pass(n, 1, 500, 0.25) for n in due[:6]] == [1, 2, 3, 4, 5, 6]


def test_with_no_growth_the_passes_are_the_multiples_of_every_and_their_numbers_as_before():
    for new, added in ((500, 1), (1300, 400), (1499, 1), (2000, 1000), (100, 100)):
        expected = new // 500 if _crossed(new, added, 500) else None
        assert _growing_pass(new, added, 500, 0.0) == expected


def test_a_batch_that_spans_several_points_runs_the_last_one_only():
    assert _growing_pass(1600, 1200, 500, 0.25) == 3
    assert _growing_pass(499, 499, 500, 0.25) is None and _growing_pass(600, 0, 500, 0.25) is None
