"""The qc service's small pure helpers: when a periodic pass is due, and the labelled-embedding index."""

import numpy as np

from services.qc.app import _crossed
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
