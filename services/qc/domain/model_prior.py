"""How sure a reviewed item's label is: the model's calibrated top-k as the prior, each human vote as evidence.

A lone reviewer is one opinion; the pre-label is another, calibrated one. Bayes' rule with both
says when the reviewer's label is safe to keep (a reviewer confirming a confident pre-label, or
overriding a shaky one with a label the model also found plausible) and when it needs an expert
(a reviewer overriding a confident pre-label). The vote model is the one-coin model of
consensus.decide, with one change that matters here: a wrong answer is not spread evenly over
the other labels. A reviewer who errs mostly picks one of the labels the task showed (the
pre-label's top-k), so agreeing with the model by mistake, or overriding it with another shown
label by mistake, is far likelier than the uniform model says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.qc.domain.consensus import DEFAULT_UNKNOWN_RELIABILITY, MAX_RELIABILITY

# Share of a reviewer's wrong answers that land on a label the task showed (the rest: any other label).
# A human who errs confuses look-alike intents, and the shown top-k are exactly those. 0.9 is on the
# cautious side: the higher it is, the more an override by a shown label is suspected to be a mistake.
DEFAULT_SHOWN_ERROR_SHARE = 0.9
# The model's top-k can miss the true label; this much prior mass is spread evenly over all labels.
DEFAULT_PRIOR_FLOOR = 0.01
# A reviewed item's label is kept when its posterior reaches this (else an expert looks). Not 0.95: the
# posterior is calibrated (bench/quality.py: reviewers' labels at 0.80-0.90 were 87% right, at 0.90-0.95
# 94%), and an expert is ~97% right, so escalating a label already 85% likely buys at most ~12 points per
# expert label, while the auto border the router learns sits where pre-labels are ~85% right and those
# are accepted with no look at all. Spending experts below 0.85 instead bought the same final accuracy
# for ~0.03 fewer labels per item (98.4% at 0.435 vs 98.5% at 0.466: side runs of bench/quality.py, target
# 0.04, 90% annotators).
DEFAULT_MIN_SINGLE_CONFIDENCE = 0.85


def label_posterior(
    top_k: Sequence[tuple[str, float]],
    votes: Sequence[tuple[str, str]],
    reliability: Mapping[str, float],
    n_classes: int,
    *,
    shown_error_share: float = DEFAULT_SHOWN_ERROR_SHARE,
    prior_floor: float = DEFAULT_PRIOR_FLOOR,
    unknown_reliability: float = DEFAULT_UNKNOWN_RELIABILITY,
) -> dict[str, float]:
    """Posterior probability of each label that is shown or voted; the rest of the mass is on the other labels.

    top_k: the model's calibrated (label, probability) pairs, as shown on the task. votes:
    (annotator, label), one per annotator (the latest counts). reliability: each annotator's
    accuracy (unknown_reliability when absent), clipped as in consensus.vote_weight.
    Given true label c, an annotator with accuracy p answers c with probability p; otherwise, with
    probability shown_error_share, one of the shown labels other than c, else any label but c.
    """
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    if not 0.0 <= shown_error_share < 1.0:
        raise ValueError(f"shown_error_share must be in [0, 1), got {shown_error_share}")
    if not 0.0 < prior_floor <= 1.0:
        raise ValueError(f"prior_floor must be in (0, 1], got {prior_floor}")
    shown = {str(label): float(p) for label, p in top_k}
    if any(not 0.0 <= p <= 1.0 for p in shown.values()):
        raise ValueError(f"top_k probabilities must be in [0, 1], got {list(top_k)}")
    latest: dict[str, str] = {}
    for annotator, label in votes:
        latest[annotator] = label
    named = list(dict.fromkeys([*shown, *latest.values()]))
    if len(named) > n_classes:
        raise ValueError(f"{len(named)} distinct labels shown or voted, more than n_classes={n_classes}")
    rest = n_classes - len(named)  # labels nobody showed or voted: all alike, handled as one block
    unshown_mass = max(0.0, 1.0 - sum(shown.values()))
    n_unshown = n_classes - len(shown)

    def prior(label: str | None) -> float:  # None: one of the `rest` labels
        model = shown.get(label, unshown_mass / n_unshown if n_unshown else 0.0) if label is not None else (
            unshown_mass / n_unshown if n_unshown else 0.0)
        return (1.0 - prior_floor) * model + prior_floor / n_classes

    def likelihood(truth: str | None) -> float:
        out = 1.0
        wrong_shown = [s for s in shown if s != truth]
        for annotator, label in latest.items():
            p = min(max(reliability.get(annotator, unknown_reliability), 1.0 / n_classes), MAX_RELIABILITY)
            if label == truth:
                out *= p
                continue
            confusable = shown_error_share / len(wrong_shown) if label in wrong_shown else 0.0
            spread = shown_error_share if not wrong_shown else 0.0  # nothing shown: every error is spread
            out *= (1.0 - p) * (confusable + (1.0 - shown_error_share + spread) / (n_classes - 1))
        return out

    scores = {label: prior(label) * likelihood(label) for label in named}
    z = sum(scores.values()) + rest * prior(None) * likelihood(None)
    return {label: s / z for label, s in sorted(scores.items(), key=lambda kv: -kv[1])}
