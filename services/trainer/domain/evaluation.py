"""Champion/challenger evaluation on held-out labels, and the thresholds a new model should start with."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from labelmesh.ml.calibration import expected_calibration_error
from labelmesh.ml.head import TrainedHead
from services.router.domain.thresholds import NO_EVIDENCE, Observation, learn_thresholds
from services.router.domain.tiers import Thresholds


def judges_models(provenance: str | None, *, exclude_auto: bool = True) -> bool:
    """Whether a held-out final label may judge and calibrate a model: any but an unchecked auto label.

    An auto label is the previous model's own prediction: a similar model agrees with it by construction,
    so it inflates held-out accuracy and, used for temperature scaling, makes the new model overconfident
    exactly where it auto-labels. Human labels, and known ones (bootstrap, golden), judge fairly.
    """
    return not (exclude_auto and provenance == "auto")


@dataclass(frozen=True)
class Evaluation:
    n: int
    accuracy: float
    ece: float
    observations: tuple[Observation, ...]


def evaluate(head: TrainedHead, X: np.ndarray, y: list[str]) -> Evaluation:
    if len(y) == 0:
        return Evaluation(0, float("nan"), float("nan"), ())
    probs = head.predict_proba(X)
    index = {c: i for i, c in enumerate(head.classes)}
    truth = np.array([index.get(label, -1) for label in y])
    pred = probs.argmax(axis=1)
    known = truth >= 0
    ece = expected_calibration_error(probs[known], truth[known]) if known.any() else float("nan")
    conf = probs.max(axis=1)
    obs = tuple(Observation(float(min(1.0, c)), bool(p == t)) for c, p, t in zip(conf, pred, truth, strict=True))
    return Evaluation(len(y), float(np.mean(pred == truth)), float(ece), obs)


@dataclass(frozen=True)
class Promotion:
    promote: bool
    reason: str


# One-sided significance level of the paired test that keeps a champion (decide_promotion).
DEFAULT_PROMOTION_ALPHA = 0.05


def decide_promotion(challenger: Evaluation, champion: Evaluation | None, alpha: float = DEFAULT_PROMOTION_ALPHA,
                     min_items: int = 30) -> Promotion:
    """Promote unless the challenger is shown to be worse than the champion on the same held-out items.

    Both models are judged on the same items, so the comparison is paired: only the items exactly one
    of them gets right carry information (McNemar's exact test, one-sided: scipy's binomial test on
    those discordant items). The champion is kept when the challenger loses significantly more of them
    than it wins (p < alpha). A fixed accuracy tolerance instead rejected challengers on noise: the
    held-out set is the hard, human-checked items (a few hundred), where a model trained on more data
    lost 1-3 points by chance and the router kept a staler model (bench/results/quality.json, models).
    Without per-item outcomes (evaluations built without observations) the accuracies are compared as is.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if champion is None:
        return Promotion(True, "first model")
    if challenger.n < min_items:
        return Promotion(True, f"only {challenger.n} held-out items (< {min_items}); promoted on trust")
    paired = len(challenger.observations) == len(champion.observations) == challenger.n == champion.n
    if not paired:
        if challenger.accuracy >= champion.accuracy:
            return Promotion(True, f"held-out accuracy {challenger.accuracy:.4f} vs champion {champion.accuracy:.4f}")
        return Promotion(False, f"held-out accuracy {challenger.accuracy:.4f} is worse than champion "
                                f"{champion.accuracy:.4f} (no per-item outcomes for a paired test)")
    lost = sum(c.correct and not n.correct for c, n in zip(champion.observations, challenger.observations))
    won = sum(n.correct and not c.correct for c, n in zip(champion.observations, challenger.observations))
    p = binomtest(lost, lost + won, 0.5, alternative="greater").pvalue if lost + won else 1.0
    versus = (f"held-out accuracy {challenger.accuracy:.4f} vs champion {champion.accuracy:.4f}; of {challenger.n} "
              f"items the challenger alone gets {won} right, the champion alone {lost} (one-sided McNemar p={p:.3f})")
    if p < alpha:
        return Promotion(False, f"challenger is worse than the champion: {versus} < {alpha}")
    return Promotion(True, versus)


def recommend_thresholds(evaluation: Evaluation, target_auto_error: float) -> Thresholds:
    """Borders learned from this model's own held-out predictions, starting with auto-accept off.

    A first model's held-out set is a few dozen items (10% of the bootstrap), too few to show any auto region under
    a 2% target (it takes 149 clean ones), so the recommendation keeps auto-accept off and the router's own
    verified pre-labels open it (thresholds.NO_EVIDENCE). Starting from the seed's 0.95 instead recommended 0.95
    whatever the model, calibrated on a few labels per class or not.
    """
    return learn_thresholds(evaluation.observations, NO_EVIDENCE, target_auto_error=target_auto_error).thresholds
