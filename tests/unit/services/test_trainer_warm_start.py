"""A retrain warm-started from the champion: same model as a cold fit, fewer lbfgs iterations, classes matched by name."""

import numpy as np

from labelmesh.ml.head import _warm_start, train_head

CLASSES = ("a", "b", "c", "d", "e", "f")


def blobs(n_per_class: int, classes=CLASSES[:5], dim=24, seed=0):
    centres = np.random.default_rng(7).normal(0, 1, size=(len(CLASSES), dim))
    rng = np.random.default_rng(seed)
    X = np.vstack([centres[CLASSES.index(c)] + rng.normal(0, 1.5, size=(n_per_class, dim)) for c in classes])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), [c for c in classes for _ in range(n_per_class)]


def test_warm_start_reaches_the_cold_model_in_fewer_iterations():
    X, y = blobs(200)
    X_cal, y_cal = blobs(40, seed=1)
    champion = train_head(X[::2], y[::2], X_cal, y_cal, encoder_name="x", classes=CLASSES, cv_folds=3)
    cold = train_head(X, y, X_cal, y_cal, encoder_name="x", classes=CLASSES, cv_folds=3)
    warm = train_head(X, y, X_cal, y_cal, encoder_name="x", classes=CLASSES, cv_folds=3, warm_start=champion)
    assert warm.metrics["warm_start"] and not cold.metrics["warm_start"]
    assert warm.metrics["lbfgs_iterations"] < cold.metrics["lbfgs_iterations"]
    X_test, _ = blobs(50, seed=2)
    assert np.abs(warm.predict_proba(X_test) - cold.predict_proba(X_test)).max() < 0.05
    assert np.mean(np.array(warm.predict(X_test)) == np.array(cold.predict(X_test))) > 0.97


def test_classes_are_matched_by_name_and_a_new_one_starts_at_zero():
    champion = train_head(*blobs(30, classes=("e", "d", "b", "a")), encoder_name="x", classes=CLASSES, cv_folds=3)
    X, y = blobs(30, classes=("a", "b", "c", "d"))  # "c" is new, "e" is gone
    fitted = np.array(sorted({CLASSES.index(c) for c in y}))
    coef, intercept = _warm_start(champion, CLASSES, np.array([CLASSES.index(c) for c in y]), X.shape[1])
    rows = {CLASSES[c]: i for i, c in enumerate(champion.class_index)}
    for k, c in enumerate(fitted):
        if CLASSES[c] == "c":
            assert not coef[k].any()
        else:
            assert np.array_equal(coef[k], champion.coef[rows[CLASSES[c]]])
    assert abs(intercept.sum()) < 1e-9
    head = train_head(X, y, encoder_name="x", classes=CLASSES, cv_folds=3, warm_start=champion)
    assert head.metrics["warm_start"] and set(head.predict(X)) <= {"a", "b", "c", "d"}


def test_a_head_for_other_embeddings_or_a_binary_fit_starts_cold():
    champion = train_head(*blobs(30), encoder_name="x", classes=CLASSES, cv_folds=3)
    X, y = blobs(30, dim=12)
    assert not train_head(X, y, encoder_name="y", classes=CLASSES, cv_folds=3, warm_start=champion).metrics["warm_start"]
    X, y = blobs(30, classes=("a", "b"))
    assert not train_head(X, y, encoder_name="x", classes=CLASSES, cv_folds=3, warm_start=champion).metrics["warm_start"]
