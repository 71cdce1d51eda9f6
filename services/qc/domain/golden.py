"""Per-annotator accuracy on golden items with a confidence interval, and when that accuracy flags them.

The flag rule: flag an annotator when they answered at least min_evidence golden items AND the
one-sided 95% UPPER bound of their accuracy is below the threshold, i.e. we are 95% sure they are
worse than the threshold, not merely unlucky. With the defaults (threshold 0.80, 10 items,
Clopper-Pearson) 0 of 10 correct flags (upper 0.26), 5 of 10 flags (0.78), 6 of 10 does not (0.85);
two misses out of two never flag, however low the point estimate. Bounds are one-sided as in the
router's thresholds: the 95% upper bound is the upper end of a two-sided 90% interval.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from statsmodels.stats.proportion import proportion_confint

Method = Literal["clopper-pearson", "wilson"]

DEFAULT_THRESHOLD = 0.80
DEFAULT_MIN_EVIDENCE = 10
DEFAULT_CONFIDENCE = 0.95
_STATSMODELS_METHOD = {"clopper-pearson": "beta", "wilson": "wilson"}


@dataclass(frozen=True, slots=True)
class GoldenAccuracy:
    """correct of n golden answers, with one-sided bounds at `confidence` (lower 0 and upper 1 when n == 0)."""

    correct: int
    n: int
    lower: float
    upper: float
    confidence: float
    method: Method

    @property
    def accuracy(self) -> float:
        """The point estimate correct / n; NaN when n == 0 (no evidence, not zero accuracy)."""
        return self.correct / self.n if self.n else float("nan")


def golden_accuracy(
    correct: int, n: int, *, confidence: float = DEFAULT_CONFIDENCE, method: Method = "clopper-pearson"
) -> GoldenAccuracy:
    """Accuracy on golden items with one-sided bounds (statsmodels proportion_confint).

    Clopper-Pearson by default: it never undercovers, and suspending a person should need strong
    evidence. Wilson is tighter and flags a little sooner.
    """
    if not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n, got correct={correct}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if method not in _STATSMODELS_METHOD:
        raise ValueError(f"method must be 'clopper-pearson' or 'wilson', got {method!r}")
    if n == 0:
        return GoldenAccuracy(0, 0, 0.0, 1.0, confidence, method)
    lower, upper = proportion_confint(correct, n, alpha=2 * (1 - confidence), method=_STATSMODELS_METHOD[method])
    # At the edges the bounds are exactly 0 and 1; Wilson's formula can land a rounding error off them.
    lower = 0.0 if correct == 0 else float(lower)
    upper = 1.0 if correct == n else float(upper)
    return GoldenAccuracy(correct, n, lower, upper, confidence, method)


def should_flag(
    accuracy: GoldenAccuracy, *, threshold: float = DEFAULT_THRESHOLD, min_evidence: int = DEFAULT_MIN_EVIDENCE
) -> bool:
    """True when n >= min_evidence and the upper bound of accuracy is below threshold (see the module docstring)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if min_evidence < 1:
        raise ValueError(f"min_evidence must be >= 1, got {min_evidence}")
    return accuracy.n >= min_evidence and accuracy.upper < threshold


def first_flag_at(
    outcomes: Iterable[bool],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_evidence: int = DEFAULT_MIN_EVIDENCE,
    confidence: float = DEFAULT_CONFIDENCE,
    method: Method = "clopper-pearson",
) -> int | None:
    """After how many golden answers (in order, True = correct) the annotator is first flagged; None if never."""
    correct = 0
    for n, ok in enumerate(outcomes, start=1):
        correct += bool(ok)
        acc = golden_accuracy(correct, n, confidence=confidence, method=method)
        if should_flag(acc, threshold=threshold, min_evidence=min_evidence):
            return n
    return None


def smoothed_accuracy(correct: int, n: int, *, prior: float = DEFAULT_THRESHOLD, strength: float = 4.0) -> float:
    """Posterior-mean accuracy under a Beta prior worth `strength` golden answers at `prior`.

    For use as consensus reliability: 3 of 3 correct gives 0.89 rather than a certainty of 1.0, and
    an annotator with no golden answers yet gets the prior.
    """
    if not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n, got correct={correct}, n={n}")
    if not 0.0 < prior < 1.0 or strength <= 0:
        raise ValueError(f"need prior in (0, 1) and strength > 0, got prior={prior}, strength={strength}")
    return (correct + prior * strength) / (n + strength)
