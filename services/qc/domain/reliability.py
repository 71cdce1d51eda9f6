"""An annotator's reliability for weighted consensus: golden evidence on top of a Dawid-Skene estimate."""

from __future__ import annotations

from services.qc.domain.golden import DEFAULT_THRESHOLD, smoothed_accuracy

# Dawid-Skene estimates from fewer multiply-labelled items than this are too noisy to use as a prior.
DEFAULT_MIN_DS_ITEMS = 20
_FLOOR, _CEIL = 0.01, 0.99


def reliability(
    golden_correct: int,
    golden_n: int,
    ds_accuracy: float | None = None,
    ds_items: int = 0,
    *,
    min_ds_items: int = DEFAULT_MIN_DS_ITEMS,
    strength: float = 4.0,
) -> float:
    """Posterior-mean accuracy: a Beta prior centred on Dawid-Skene's estimate (when it rests on at least
    min_ds_items items, else on the golden threshold), updated by the golden answers.

    Golden answers are ground truth and keep the final say as they accumulate; Dawid-Skene, which
    learns from agreement alone, covers annotators with few golden answers yet.
    """
    prior = DEFAULT_THRESHOLD
    if ds_accuracy is not None and ds_items >= min_ds_items:
        prior = min(max(ds_accuracy, _FLOOR), _CEIL)
    return smoothed_accuracy(golden_correct, golden_n, prior=prior, strength=strength)
