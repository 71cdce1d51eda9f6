"""Calibration metrics and calibrators: top-label ECE, NLL, temperature scaling, isotonic top-label."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

# Temperature search range (log space): T in [e^-4, e^4] ~ [0.018, 55] covers any sane head.
_LOG_T_BOUNDS = (-4.0, 4.0)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _check(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(f"need probs (n, k) and labels (n,), got {probs.shape} and {labels.shape}")
    if probs.shape[0] == 0:
        raise ValueError("no rows")
    return probs, labels.astype(np.int64)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE with equal-width bins (lo, hi] (Guo et al. 2017); confidence 0 falls in the first bin.

    ECE = sum over bins of |B|/n * |accuracy(B) - mean confidence(B)|.
    """
    probs, labels = _check(probs, labels)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    gap = np.bincount(bins, weights=correct - conf, minlength=n_bins)
    return float(np.abs(gap).sum() / len(conf))


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-12) -> float:
    """Mean -log p(true label); probabilities are clipped at eps so a confident miss is finite."""
    probs, labels = _check(probs, labels)
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], eps, 1.0)).mean())


def selective_accuracy(probs: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """(share of items with top confidence >= threshold, accuracy among them; nan if none)."""
    probs, labels = _check(probs, labels)
    keep = probs.max(axis=1) >= threshold
    if not keep.any():
        return 0.0, float("nan")
    return float(keep.mean()), float((probs[keep].argmax(axis=1) == labels[keep]).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T) on held-out labels (bounded 1-D search on log T)."""
    logits, labels = _check(logits, labels)
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[rows, labels].mean())

    result = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-5})
    return float(np.exp(result.x))


@dataclass(frozen=True)
class IsotonicTopLabel:
    """Isotonic regression of correctness on top-label confidence (Zadrozny & Elkan 2002).

    Only the top label's probability is remapped; the other classes are rescaled to share what is left,
    keeping their order. The new top probability is floored so the argmax never changes.
    """

    x: np.ndarray  # increasing raw confidences (the isotonic fit's thresholds)
    y: np.ndarray  # calibrated confidence at each threshold

    @classmethod
    def fit(cls, probs: np.ndarray, labels: np.ndarray) -> IsotonicTopLabel:
        from sklearn.isotonic import IsotonicRegression

        probs, labels = _check(probs, labels)
        conf = probs.max(axis=1)
        correct = (probs.argmax(axis=1) == labels).astype(np.float64)
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(conf, correct)
        return cls(np.asarray(iso.X_thresholds_, dtype=np.float64), np.asarray(iso.y_thresholds_, dtype=np.float64))

    def transform(self, probs: np.ndarray) -> np.ndarray:
        probs = np.asarray(probs, dtype=np.float64)
        if len(probs) == 0:
            return probs.copy()
        top = probs.argmax(axis=1)
        rows = np.arange(len(probs))
        p1 = probs[rows, top]
        rest = 1.0 - p1
        p2 = np.sort(probs, axis=1)[:, -2] if probs.shape[1] > 1 else np.zeros(len(probs))
        c = np.interp(p1, self.x, self.y)
        # Keep the argmax: c > p2 * (1 - c) / rest  <=>  c > p2 / (rest + p2); the 1e-9 breaks ties.
        floor = np.divide(p2, rest + p2, out=np.zeros_like(p2), where=(rest + p2) > 0)
        c = np.minimum(np.maximum(c, floor + 1e-9), 1.0)
        scale = np.divide(1.0 - c, rest, out=np.zeros_like(rest), where=rest > 0)
        out = probs * scale[:, None]
        out[rows, top] = c
        return out
