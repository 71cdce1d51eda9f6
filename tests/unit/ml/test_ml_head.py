"""The trained head: calibration source, fixed taxonomy, top-k, and byte round trips."""

import numpy as np
import pytest

from labelmesh.ml.calibration import fit_temperature
from labelmesh.ml.head import TrainedHead, sha256_hex, train_head

TAXONOMY = ("a", "b", "c", "d", "e", "never_seen")


def blobs(n_per_class=40, classes=("a", "b", "c", "d", "e"), dim=16, seed=0):
    """Noisy draws around fixed class centres; `seed` changes only the noise."""
    centres = np.random.default_rng(1234).normal(0, 1, size=(len(classes), dim))
    rng = np.random.default_rng(seed)
    X = np.vstack([c + rng.normal(0, 1.2, size=(n_per_class, dim)) for c in centres])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = [label for label in classes for _ in range(n_per_class)]
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def head():
    X, y = blobs()
    return train_head(X, y, encoder_name="hashing-16", classes=TAXONOMY, C=10.0)


def test_full_taxonomy_is_kept_and_unseen_class_gets_zero(head):
    X, _ = blobs(seed=1)
    probs = head.predict_proba(X)
    assert head.classes == TAXONOMY
    assert probs.shape == (len(X), len(TAXONOMY))
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert (probs[:, TAXONOMY.index("never_seen")] == 0).all()
    assert head.metrics["n_trained_classes"] == 5 and head.metrics["calibration_source"] == "cv20"


def test_head_learns_something(head):
    X, y = blobs(seed=1)
    assert np.mean(np.array(head.predict(X)) == np.array(y)) > 0.6


def test_top_k_is_sorted_and_sums_to_at_most_one(head):
    X, _ = blobs(n_per_class=3, seed=2)
    for row in head.top_k(X, k=3):
        probs = [p for _, p in row]
        assert len(row) == 3 and probs == sorted(probs, reverse=True)
        assert sum(probs) <= 1.0 + 1e-9
    assert all(len(row) == 5 for row in head.top_k(X, k=50))  # never more than the trained classes


def test_round_trip_through_bytes_gives_identical_probabilities(head):
    X, _ = blobs(seed=3)
    data = head.to_bytes()
    loaded = TrainedHead.from_bytes(data)
    assert np.array_equal(loaded.predict_proba(X), head.predict_proba(X))
    assert loaded.classes == head.classes and loaded.temperature == head.temperature
    assert loaded.metrics == head.metrics and loaded.encoder_name == "hashing-16"
    assert loaded.to_bytes() == data  # deterministic, so the checksum identifies the head
    assert head.checksum() == sha256_hex(data) == loaded.checksum()


def test_cv_temperature_is_fitted_on_folds_that_never_saw_their_held_out_rows():
    # Folds started from the full model (which has seen their held-out rows) gave a lower temperature
    # (-0.005 here): the reference below is plain sklearn, each fold fitted from scratch on its own rows.
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    X, y = blobs(n_per_class=20, classes=tuple("abcdefghij"))
    head = train_head(X, y, encoder_name="hashing-16", C=50.0, seed=0)
    folds = StratifiedKFold(20, shuffle=True, random_state=0)
    logits = cross_val_predict(LogisticRegression(C=50.0, max_iter=2000, random_state=0), X.astype(np.float64),
                               np.array(y), cv=folds, method="decision_function")
    labels = np.array(["abcdefghij".index(label) for label in y])
    assert head.metrics["calibration_source"] == "cv20"
    assert head.temperature == pytest.approx(fit_temperature(logits, labels), abs=1e-4)


def test_isotonic_head_round_trips():
    X, y = blobs()
    head = train_head(X, y, encoder_name="x", calibration="isotonic")
    loaded = TrainedHead.from_bytes(head.to_bytes())
    assert head.temperature == 1.0 and loaded.isotonic is not None
    assert np.array_equal(loaded.predict_proba(X), head.predict_proba(X))


def test_given_calibration_set_is_used():
    X, y = blobs()
    X_cal, y_cal = blobs(n_per_class=10, seed=5)
    head = train_head(X, y, X_cal, y_cal, encoder_name="x")
    assert head.metrics["calibration_source"] == "given" and head.metrics["n_calibration"] == 50


def test_binary_head_matches_sklearn():
    X, y = blobs(classes=("yes", "no"))
    head = train_head(X, y, encoder_name="x", calibration="none")
    assert np.allclose(head.predict_proba(X), head.estimator.predict_proba(X))


def test_corrupt_or_foreign_bytes_are_rejected(head):
    with pytest.raises(ValueError, match="corrupt"):
        TrainedHead.from_bytes(b"not a zip")
    with pytest.raises(ValueError, match="corrupt"):
        TrainedHead.from_bytes(head.to_bytes()[:-40])


def test_bad_training_input_is_rejected():
    X, y = blobs()
    with pytest.raises(ValueError, match="taxonomy"):
        train_head(X, y, encoder_name="x", classes=("a", "b"))
    with pytest.raises(ValueError, match="two distinct"):
        train_head(X[:5], ["a"] * 5, encoder_name="x")
    with pytest.raises(ValueError, match="shape"):
        train_head(X, y, encoder_name="x").predict_proba(X[:, :3])
