"""The trainable part of a model version: a calibrated logistic-regression head over frozen embeddings."""

from __future__ import annotations

import hashlib
import io
import json
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from labelmesh.ml.calibration import (
    IsotonicTopLabel,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    softmax,
)

ARTIFACT_FORMAT = "labelmesh.head"
ARTIFACT_VERSION = 1
CALIBRATIONS = ("temperature", "isotonic", "none")
# Inverse regularisation strength. Embeddings are unit vectors with small coordinates, so the sklearn
# default C=1 underfits badly. bench/results/calibration.json "c_sweep" (5-fold CV on training rows only):
# 500 rows: C=1 .588, 20 .770, 50 .782, 200 .790; all rows: C=1 .903, 20 .921, 50 .920, 200 .916.
# 50 is within 0.1 point of the best on all rows and gains 1.2 points over 20 on the 500-row bootstrap.
DEFAULT_C = 50.0
# Out-of-fold logits come from models trained on (k-1)/k of the rows, which are less accurate than the
# final model yet no less sharp, so a temperature fitted on them leaves the final head over-confident
# where the learning curve is steep. On BANKING77 with 500 rows (3 seeds, C=50, test split): 5 folds
# ECE .033 (mean conf - acc +.028), 20 folds ECE .024 (+.006). From 1,500 rows on, 5 vs 10 folds makes
# no difference (ECE .011-.013), so the extra fits are only spent on small training sets.
SMALL_TRAINING_SET = 1000
CV_FOLDS_SMALL, CV_FOLDS_LARGE = 20, 5
# The cross-validation folds start from zero, not from the full model's weights. A warm start halves
# lbfgs's iterations, but the full model has seen each fold's held-out rows and lbfgs (tol 1e-4) stops
# ~30 iterations later, still near it: the out-of-fold logits come out too good, the temperature too low
# and the head over-confident (500 BANKING77 rows, seed 0: T .682 warm vs .713 cold, test ECE .049 vs
# .034). Fitting the warm folds to tol 1e-6 removes that (T .712) but costs more than cold folds do:
# 24 s vs 14 s of wall time at 500 rows, 31 s vs 20 s at 900 (one run each, 2 cores).
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # same head -> same bytes -> same checksum


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, eq=False)
class TrainedHead:
    """Linear head + calibration for one encoder; predictions use only the arrays below.

    Output columns follow `classes` (the full taxonomy). Classes with no training rows (absent from
    `class_index`) always get probability 0: the head cannot predict what it never saw.
    """

    classes: tuple[str, ...]
    encoder_name: str
    temperature: float
    metrics: dict[str, Any]
    coef: np.ndarray  # float64 (n_trained, dim)
    intercept: np.ndarray  # float64 (n_trained,)
    class_index: np.ndarray  # int64 (n_trained,): column in `classes` of each row of coef
    calibration: str = "temperature"
    isotonic: IsotonicTopLabel | None = None
    # The fitted sklearn model, for inspection right after training; None once loaded from bytes.
    estimator: Any = field(default=None, repr=False)

    @property
    def dim(self) -> int:
        return int(self.coef.shape[1])

    def logits(self, X: np.ndarray) -> np.ndarray:
        """Uncalibrated logits over the trained classes (columns ordered as class_index)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(f"expected embeddings of shape (n, {self.dim}), got {X.shape}")
        return X @ self.coef.T + self.intercept

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, shape (n, len(classes))."""
        trained = softmax(self.logits(X), self.temperature)
        probs = np.zeros((trained.shape[0], len(self.classes)), dtype=np.float64)
        probs[:, self.class_index] = trained
        if self.isotonic is not None:
            probs = self.isotonic.transform(probs)
        return probs

    def predict(self, X: np.ndarray) -> list[str]:
        return [self.classes[i] for i in self.predict_proba(X).argmax(axis=1)]

    def top_k(self, X: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        """Per row, the k most probable labels (never more than the trained classes), most probable first."""
        probs = self.predict_proba(X)
        k = max(0, min(k, len(self.class_index)))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.classes[j], float(row[j])) for j in idx] for row, idx in zip(probs, order)]

    def to_bytes(self) -> bytes:
        """A versioned zip of .npy arrays + meta.json (no pickle), deterministic for a given head."""
        meta = {
            "format": ARTIFACT_FORMAT,
            "version": ARTIFACT_VERSION,
            "classes": list(self.classes),
            "encoder_name": self.encoder_name,
            "temperature": self.temperature,
            "calibration": self.calibration,
            "metrics": self.metrics,
        }
        arrays = {"coef": self.coef, "intercept": self.intercept, "class_index": self.class_index}
        if self.isotonic is not None:
            arrays |= {"isotonic_x": self.isotonic.x, "isotonic_y": self.isotonic.y}
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(zipfile.ZipInfo("meta.json", _FIXED_ZIP_TIME), json.dumps(meta, sort_keys=True, default=_jsonable))
            for name, array in arrays.items():
                out = io.BytesIO()
                np.lib.format.write_array(out, np.ascontiguousarray(array), allow_pickle=False)
                zf.writestr(zipfile.ZipInfo(f"{name}.npy", _FIXED_ZIP_TIME), out.getvalue())
        return buf.getvalue()

    def checksum(self) -> str:
        return sha256_hex(self.to_bytes())

    @staticmethod
    def from_bytes(data: bytes) -> TrainedHead:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                meta = json.loads(zf.read("meta.json"))
                if meta.get("format") != ARTIFACT_FORMAT:
                    raise ValueError(f"not a {ARTIFACT_FORMAT} artifact (format={meta.get('format')!r})")
                if meta.get("version") != ARTIFACT_VERSION:
                    raise ValueError(f"unsupported {ARTIFACT_FORMAT} version {meta.get('version')!r}")
                arrays = {
                    name.removesuffix(".npy"): np.lib.format.read_array(io.BytesIO(zf.read(name)), allow_pickle=False)
                    for name in zf.namelist()
                    if name.endswith(".npy")
                }
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"corrupt head artifact: {exc}") from exc
        isotonic = None
        if "isotonic_x" in arrays:
            isotonic = IsotonicTopLabel(arrays["isotonic_x"], arrays["isotonic_y"])
        head = TrainedHead(
            classes=tuple(meta["classes"]),
            encoder_name=meta["encoder_name"],
            temperature=float(meta["temperature"]),
            metrics=meta["metrics"],
            coef=arrays["coef"],
            intercept=arrays["intercept"],
            class_index=arrays["class_index"],
            calibration=meta["calibration"],
            isotonic=isotonic,
        )
        _validate(head)
        return head


def _validate(head: TrainedHead) -> None:
    n_trained = len(head.class_index)
    if head.coef.ndim != 2 or head.coef.shape[0] != n_trained or head.intercept.shape != (n_trained,):
        raise ValueError("corrupt head artifact: coef/intercept/class_index shapes disagree")
    if n_trained and (head.class_index.min() < 0 or head.class_index.max() >= len(head.classes)):
        raise ValueError("corrupt head artifact: class_index outside the class list")
    if not head.temperature > 0:
        raise ValueError("corrupt head artifact: temperature must be positive")
    if head.calibration not in CALIBRATIONS:
        raise ValueError(f"unknown calibration {head.calibration!r}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _fit_lr(X: np.ndarray, y: np.ndarray, C: float, seed: int, max_iter: int,
            init: tuple[np.ndarray, np.ndarray] | None = None):
    """Fit multinomial LR; return (estimator, coef, intercept, classes) with a 2-class fit expanded to 2 rows.

    `init`: starting (coef, intercept), one row per class in np.unique(y) order (sklearn's own layout).
    The loss is computed in float32, as the embeddings are stored: lbfgs keeps its own state in float64, and
    at 9,000 BANKING77 rows it took 75 iterations instead of 81 at 2/3 of the CPU time per iteration, accuracy
    on a random 1,000-row holdout .928 vs .930, test ECE .011 vs .010 (one run, 2026-12-07, 2 cores).
    """
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=C, max_iter=max_iter, random_state=seed, warm_start=init is not None)
    if init is not None:
        lr.coef_, lr.intercept_ = init
    lr.fit(np.asarray(X, dtype=np.float32), y)
    # The estimator then predicts in float64, as the head does from the same weights.
    lr.coef_, lr.intercept_ = lr.coef_.astype(np.float64), lr.intercept_.astype(np.float64)
    coef, intercept = lr.coef_.copy(), lr.intercept_.copy()
    if coef.shape[0] == 1:  # binary: sklearn keeps one row w; logits (-f/2, f/2) give softmax = sigmoid(f)
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return lr, coef, intercept, lr.classes_.astype(np.int64)


def _warm_start(previous: TrainedHead, classes: tuple[str, ...], y: np.ndarray, dim: int
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """The previous head's weights laid out for a fit on labels `y` (columns of `classes`); new classes start at 0.

    None when it cannot seed this fit: another embedding size, or a binary fit (sklearn's one-row layout).
    """
    fitted = np.unique(y)
    if previous.dim != dim or len(fitted) < 3:
        return None
    row = {previous.classes[c]: i for i, c in enumerate(previous.class_index)}
    coef, intercept = np.zeros((len(fitted), dim)), np.zeros(len(fitted))
    for k, c in enumerate(fitted):
        if (i := row.get(classes[c])) is not None:
            coef[k], intercept[k] = previous.coef[i], previous.intercept[i]
    # Softmax ignores a common shift of the intercepts; centre them as sklearn's own solution is centred.
    return coef, intercept - intercept.mean()


def _cross_validated_logits(
    X: np.ndarray, y: np.ndarray, trained: np.ndarray, *, folds: int, C: float, seed: int, max_iter: int
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold logits over the `trained` classes, and the matching label columns.

    Rows whose class is missing from their fold's training part are dropped: no fold model could
    predict them, so they say nothing about how sharp the final model's confidence is.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    column = {c: i for i, c in enumerate(trained)}
    counts = np.bincount(y)
    splitter = (
        StratifiedKFold(folds, shuffle=True, random_state=seed)
        if counts[counts > 0].max() >= folds
        else KFold(folds, shuffle=True, random_state=seed)
    )
    logits, labels = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # "least populated class has only n members"
        splits = list(splitter.split(X, y))
    for train_idx, val_idx in splits:
        if len(np.unique(y[train_idx])) < 2:
            continue
        _, coef, intercept, fold_classes = _fit_lr(X[train_idx], y[train_idx], C, seed, max_iter)
        fold_logits = np.full((len(val_idx), len(trained)), -np.inf)
        fold_logits[:, [column[c] for c in fold_classes]] = X[val_idx] @ coef.T + intercept
        seen = np.isin(y[val_idx], fold_classes)
        logits.append(fold_logits[seen])
        labels.append(np.array([column[c] for c in y[val_idx][seen]], dtype=np.int64))
    if not logits:
        raise ValueError("too few training rows to cross-validate a calibration")
    return np.vstack(logits), np.concatenate(labels)


def train_head(
    X_train: np.ndarray,
    y_train: Sequence[str],
    X_cal: np.ndarray | None = None,
    y_cal: Sequence[str] | None = None,
    *,
    encoder_name: str,
    classes: Sequence[str] | None = None,
    calibration: str = "temperature",
    seed: int = 0,
    C: float = DEFAULT_C,
    cv_folds: int | None = None,
    max_iter: int = 2000,
    warm_start: TrainedHead | None = None,
) -> TrainedHead:
    """Fit a logistic-regression head on embeddings and calibrate it on held-out labels.

    `classes` is the project's taxonomy (output column order); default: the sorted labels seen.
    Calibration data: (X_cal, y_cal) when given; otherwise out-of-fold logits from `cv_folds`-fold
    cross-validation on the training rows (default 20 folds under 1,000 rows, else 5), and the final
    model is fitted on all of them. We chose CV over a held-out share because the bootstrap has ~500
    rows for 77 classes (~6 per class): holding out 20% costs accuracy, CV costs only CPU time.

    calibration: "temperature" (default), "isotonic" (top label only) or "none". Temperature wins on
    the numbers (bench/results/calibration.json, BANKING77 test, CV calibration, means of 10 random
    subsets): test ECE .027 vs .036 at 500 rows, .013 vs .015 at 1,500, .009 vs .008 on all rows (a
    tie), and lower NLL at every size. It has one parameter (isotonic overfits a 500-row calibration
    set), keeps the ranking, and rescales every class, so the whole top-k list stays meaningful rather
    than only the first label.

    warm_start: a previous head (the champion) whose weights start the final fit, never the cross-validation
    folds (see the note at CV_FOLDS_SMALL). The loss is convex, so only where lbfgs stops changes: at 10,000
    BANKING77 labels, from a champion trained on 9,400, 29 iterations instead of 68-70, test accuracy
    .927-.929 either way, test ECE .008-.010 vs .006-.010 (bench/results/retrain_time.json). By class name.
    """
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {calibration!r}")
    X_train = np.asarray(X_train, dtype=np.float64)
    y_train = [str(label) for label in y_train]
    if X_train.ndim != 2 or X_train.shape[0] != len(y_train):
        raise ValueError(f"X_train {X_train.shape} does not match {len(y_train)} labels")
    if (X_cal is None) != (y_cal is None):
        raise ValueError("give both X_cal and y_cal, or neither")
    if classes is None:
        classes = sorted(set(y_train) | set(y_cal or ()))
    classes = tuple(str(c) for c in classes)
    if len(set(classes)) != len(classes):
        raise ValueError("classes contains duplicates")
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(y_train) - index.keys())
    if unknown:
        raise ValueError(f"training labels not in the taxonomy: {unknown[:10]}")
    y = np.array([index[label] for label in y_train], dtype=np.int64)
    if len(np.unique(y)) < 2:
        raise ValueError("need at least two distinct classes in the training rows")
    if cv_folds is None:
        cv_folds = CV_FOLDS_SMALL if len(y) < SMALL_TRAINING_SET else CV_FOLDS_LARGE
    cv_folds = min(cv_folds, len(y))

    init = None if warm_start is None else _warm_start(warm_start, classes, y, X_train.shape[1])
    estimator, coef, intercept, trained = _fit_lr(X_train, y, C, seed, max_iter, init)
    column = {c: i for i, c in enumerate(trained)}

    if X_cal is not None:
        X_cal = np.asarray(X_cal, dtype=np.float64)
        y_cal_idx = np.array([index.get(str(label), -1) for label in y_cal], dtype=np.int64)
        seen = np.isin(y_cal_idx, trained)
        cal_logits = (X_cal @ coef.T + intercept)[seen]
        cal_labels = np.array([column[c] for c in y_cal_idx[seen]], dtype=np.int64)
        cal_source, n_unseen = "given", int((~seen).sum())
    else:
        cal_logits, cal_labels = _cross_validated_logits(
            X_train, y, trained, folds=cv_folds, C=C, seed=seed, max_iter=max_iter
        )
        cal_source, n_unseen = f"cv{cv_folds}", len(y) - len(cal_labels)
    if len(cal_labels) == 0:
        raise ValueError("no calibration rows belong to a trained class")

    raw = softmax(cal_logits)
    temperature, isotonic = 1.0, None
    if calibration == "temperature":
        temperature = fit_temperature(cal_logits, cal_labels)
        calibrated = softmax(cal_logits, temperature)
    elif calibration == "isotonic":
        isotonic = IsotonicTopLabel.fit(raw, cal_labels)
        calibrated = isotonic.transform(raw)
    else:
        calibrated = raw

    metrics = {
        "n_train": len(y),
        "n_classes": len(classes),
        "n_trained_classes": len(trained),
        "C": C,
        "calibration_source": cal_source,
        "warm_start": init is not None,
        "lbfgs_iterations": int(np.max(estimator.n_iter_)),
        "n_calibration": len(cal_labels),
        "n_calibration_unseen_class": n_unseen,
        # Measured on the calibration rows themselves: in-sample for the calibrator, so optimistic.
        "calibration_accuracy": float((raw.argmax(axis=1) == cal_labels).mean()),
        "calibration_ece_raw": expected_calibration_error(raw, cal_labels),
        "calibration_ece": expected_calibration_error(calibrated, cal_labels),
        "calibration_nll_raw": negative_log_likelihood(raw, cal_labels),
        "calibration_nll": negative_log_likelihood(calibrated, cal_labels),
    }
    return TrainedHead(
        classes=classes,
        encoder_name=encoder_name,
        temperature=temperature,
        metrics=metrics,
        coef=coef,
        intercept=intercept,
        class_index=trained,
        calibration=calibration,
        isotonic=isotonic,
        estimator=estimator,
    )
