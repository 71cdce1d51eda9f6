"""kNN consistency: neighbours match sklearn's cosine search, and the flag fires only on a clear other majority."""

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from services.qc.domain.knn_check import knn_check

DIM = 32


@pytest.fixture(scope="module")
def labelled():
    """Two tight clusters: 30 'card_lost' items around one direction, 30 'refund' items around another."""
    rng = np.random.default_rng(11)
    a, b = rng.normal(size=DIM), rng.normal(size=DIM)
    b -= a * (a @ b) / (a @ a)  # orthogonal centres: cross-cluster cosine ~0
    rows = np.vstack([a + 0.15 * np.linalg.norm(a) / np.sqrt(DIM) * rng.normal(size=(30, DIM)),
                      b + 0.15 * np.linalg.norm(b) / np.sqrt(DIM) * rng.normal(size=(30, DIM))])
    labels = ["card_lost"] * 30 + ["refund"] * 30
    ids = [f"item-{i}" for i in range(60)]
    return rows, labels, ids, a, b


def test_label_against_a_clear_neighbourhood_is_flagged_with_evidence(labelled):
    rows, labels, ids, a, _ = labelled
    finding = knn_check(a, "refund", rows, labels, ids)
    assert finding.flagged
    assert finding.majority_label == "card_lost" and finding.majority_share == 1.0
    assert finding.message == (
        "You labelled this 'refund', but 100% of the 10 most similar labelled items are 'card_lost'. "
        "Please double-check."
    )
    assert len(finding.neighbour_ids) == 10 and set(finding.neighbour_labels) == {"card_lost"}
    assert list(finding.similarities) == sorted(finding.similarities, reverse=True)
    # The same neighbours, in the same order, as sklearn's brute-force cosine search.
    nn = NearestNeighbors(n_neighbors=10, metric="cosine", algorithm="brute").fit(rows)
    dist, idx = nn.kneighbors(a[None, :])
    assert finding.neighbour_ids == tuple(ids[i] for i in idx[0])
    assert finding.similarities == pytest.approx(1 - dist[0])


def test_consistent_label_is_not_flagged(labelled):
    rows, labels, ids, a, _ = labelled
    finding = knn_check(a, "card_lost", rows, labels, ids)
    assert not finding.flagged and finding.agreeing_share == 1.0 and finding.majority_label is None


def test_ninety_percent_flags_and_seventy_does_not(labelled):
    rows, labels, ids, a, _ = labelled
    nn_order = np.argsort(-(rows @ a) / np.linalg.norm(rows, axis=1))
    relabelled = list(labels)
    relabelled[nn_order[0]] = "refund"  # the closest neighbour now agrees with the new label
    finding = knn_check(a, "refund", rows, relabelled, ids)
    assert finding.flagged and finding.majority_share == pytest.approx(0.9)
    assert "90% of the 10 most similar labelled items are 'card_lost'" in finding.message
    for i in nn_order[1:3]:
        relabelled[i] = "refund"
    finding = knn_check(a, "refund", rows, relabelled, ids)
    assert not finding.flagged and finding.majority_share == pytest.approx(0.7)
    assert finding.agreeing_share == pytest.approx(0.3)


def test_dissimilar_items_cast_no_vote(labelled):
    rows, labels, ids, a, b = labelled
    unrelated = np.random.default_rng(5).normal(size=DIM)
    for centre in (a, b):  # orthogonal to both centres: far from every labelled item
        unrelated -= centre * (unrelated @ centre) / (centre @ centre)
    finding = knn_check(unrelated, "refund", rows, labels, ids, min_similarity=0.5)
    assert finding.neighbour_ids == () and not finding.flagged
    assert "(0 neighbours at similarity >= 0.5)" in finding.message
    loose = knn_check(unrelated, "refund", rows, labels, ids, min_similarity=-1.0)
    assert len(loose.neighbour_ids) == 10 and max(loose.similarities) < 0.5
    # Only 5 items in the labelled set: even if all 5 disagree, 5 of k=10 is not 80%.
    few = knn_check(a, "refund", rows[:5], labels[:5], ids[:5])
    assert few.majority_share == 0.5 and not few.flagged


def test_the_item_itself_is_excluded(labelled):
    rows, labels, ids, _, _ = labelled
    finding = knn_check(rows[0], labels[0], rows, labels, ids, item_id="item-0")
    assert "item-0" not in finding.neighbour_ids
    assert knn_check(rows[0], labels[0], rows, labels, ids).neighbour_ids[0] == "item-0"


def test_bad_input_is_refused(labelled):
    rows, labels, ids, a, _ = labelled
    with pytest.raises(ValueError):
        knn_check(a[:5], "x", rows, labels, ids)
    with pytest.raises(ValueError):
        knn_check(np.zeros(DIM), "x", rows, labels, ids)
    with pytest.raises(ValueError):
        knn_check(a, "x", rows, labels[:-1], ids)


def test_top_k_by_partition_is_what_a_stable_full_sort_gives_ties_included():
    from services.qc.domain.knn_check import _top

    rng = np.random.default_rng(3)
    for _ in range(200):
        sims = rng.integers(0, 6, size=int(rng.integers(1, 40))).astype(float) / 5  # many ties
        take = int(rng.integers(1, len(sims) + 1))
        assert _top(sims, take).tolist() == np.argsort(-sims, kind="stable")[:take].tolist()


def test_the_item_itself_is_never_its_own_neighbour_wherever_it_sits(labelled):
    rows, labels, ids, a, _ = labelled
    for position in (0, 17, 59):
        finding = knn_check(rows[position], labels[position], rows, labels, ids, item_id=ids[position])
        assert ids[position] not in finding.neighbour_ids and len(finding.neighbour_ids) == 10
