"""The champion's re-scoring rules (services/router/champion.py): which embeddings it may score, and its scores."""

from __future__ import annotations

import numpy as np

from labelmesh.ml.head import train_head
from services.router.champion import TOP_K, Champion


def _champion() -> Champion:
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(loc=c, scale=0.1, size=(10, 8)) for c in (-1.0, 0.0, 1.0)])
    head = train_head(X, ["neg"] * 10 + ["zero"] * 10 + ["pos"] * 10, encoder_name="enc-8", cv_folds=3)
    return Champion(version=3, encoder="enc-8", head=head)


def test_only_embeddings_of_its_encoder_and_width_are_rescored() -> None:
    champion = _champion()
    assert champion.fits(np.zeros(8, np.float32), "enc-8")
    assert not champion.fits(np.zeros(8, np.float32), "another-8"), "another encoder's space"
    assert not champion.fits(np.zeros(8, np.float32), None), "an item stored before encoders were recorded"
    assert not champion.fits(np.zeros(16, np.float32), "enc-8"), "another width"


def test_scores_are_the_heads_ranked_probabilities() -> None:
    champion = _champion()
    vectors = np.array([[1.0] * 8, [-1.0] * 8], np.float32)
    scores = champion.scores(vectors)
    assert [s[0].label for s in scores] == ["pos", "neg"]
    for row, ranked in zip(champion.head.top_k(vectors, TOP_K), scores, strict=True):
        assert [(s.label, s.probability) for s in ranked] == [(label, min(1.0, p)) for label, p in row]
        assert all(0.0 <= s.probability <= 1.0 for s in ranked)
        assert [s.probability for s in ranked] == sorted((s.probability for s in ranked), reverse=True)
