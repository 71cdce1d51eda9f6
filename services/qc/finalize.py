"""When an item's labels are enough for a final label, and which one: the qc decision as a pure function."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from schemas.events import Provenance, Tier
from services.qc.domain.model_prior import (
    DEFAULT_MIN_SINGLE_CONFIDENCE,
    DEFAULT_SHOWN_ERROR_SHARE,
    label_posterior,
)


@dataclass(frozen=True)
class Vote:
    annotator: str
    label: str
    expert: bool = False


@dataclass(frozen=True)
class ItemState:
    """What qc knows about one item; routing fields are None until item.routed arrived."""

    trusted_label: str | None = None
    golden_label: str | None = None
    tier: Tier | None = None
    required: int = 0
    spot_check: bool = False
    escalated: bool = False
    prelabel: tuple[str, float] | None = None
    # The pre-label's calibrated top-k as the task showed it (item.routed); empty when unknown.
    top_k: tuple[tuple[str, float], ...] = ()
    votes: tuple[Vote, ...] = ()
    final_label: str | None = None
    # A second ordinary reviewer was asked for (SecondOpinion) and the router's re-route is not here yet.
    second_opinion: bool = False


@dataclass(frozen=True)
class Final:
    label: str
    provenance: Provenance
    confidence: float
    verified: bool


@dataclass(frozen=True)
class Escalate:
    reason: str
    evidence: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class SecondOpinion:
    """A lone reviewer's label is in doubt: one more ordinary reviewer before an expert (see next_step)."""

    reason: str
    evidence: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Wait:
    reason: str


@dataclass(frozen=True)
class ReviewPolicy:
    """How a lone reviewer's label is weighed against the model's (services.qc.domain.model_prior).

    The reviewer's label is final when its posterior, with the pre-label's top-k as the prior, reaches
    min_confidence; otherwise an expert looks. n_classes is the project's label-set size.
    """

    n_classes: int
    min_confidence: float = DEFAULT_MIN_SINGLE_CONFIDENCE
    shown_error_share: float = DEFAULT_SHOWN_ERROR_SHARE

    def __post_init__(self) -> None:
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")
        if not 0.0 < self.min_confidence < 1.0:
            raise ValueError(f"min_confidence must be in (0, 1), got {self.min_confidence}")


Consensus = Callable[[Sequence[tuple[str, str]], Mapping[str, float]], tuple[str, float, bool]]


def next_step(
    state: ItemState, reliability: Mapping[str, float], consensus: Consensus, *, confirm_single: bool = False,
    review: ReviewPolicy | None = None, second_opinion: bool = False,
) -> Final | Escalate | SecondOpinion | Wait:
    """Decide an item's final label from its routing and votes; a known answer always wins.

    confirm_single: a lone reviewer (single tier, spot check) is final only when they confirm the
    pre-label; one who overrides it is escalated, since model and reviewer are then two opinions that
    disagree. A reviewer who errs mostly picks a label that looks like the truth, rarely the very label
    the model chose, so confirmation is strong evidence even at moderate confidence, and the single band
    can reach far lower (bench/quality.py measures what it buys and costs). Off by default.
    review: with confirm_single, when the item's top-k is known, the lone reviewer's label is weighed
    against the model's instead: kept when its posterior reaches review.min_confidence (an override
    the model found plausible is kept; a confirmation of a shaky pre-label is not), else escalated.
    second_opinion: a lone reviewer who would be escalated gets a second ordinary reviewer first
    (SecondOpinion; the item comes back routed for two, the first label counted): two who agree are a
    consensus, two who do not go to an expert. An expert label costs five ordinary ones, and with the
    ~90% team most doubted overrides were the reviewer's honest slip that a second reviewer settles.
    """
    known = state.trusted_label or state.golden_label
    if known:
        return Final(known, Provenance.IMPORTED, 1.0, verified=False)
    if state.tier is None:
        return Wait("not routed yet")
    expert_votes = [v for v in state.votes if v.expert]
    if state.escalated or state.tier is Tier.EXPERT:
        if not expert_votes:
            return Wait("waiting for an expert")
        label = expert_votes[-1].label
        corrected = state.final_label is not None and state.final_label != label
        return Final(label, Provenance.CORRECTED if corrected else Provenance.EXPERT, 1.0, verified=True)
    if state.tier is Tier.AUTO and state.required == 0:
        # Also for an item promoted to auto (router domain/promote.py) after someone claimed its task: their label
        # is kept with its votes, not taken as a review, so the final label does not depend on whether the label
        # or the promotion was read first (a replay must rebuild the same state).
        if state.prelabel is None:
            return Escalate("auto-routed without a pre-label")
        return Final(state.prelabel[0], Provenance.AUTO, state.prelabel[1], verified=False)
    if state.second_opinion and state.required <= 1:
        return Wait("waiting for a second opinion")
    if len(state.votes) < max(1, state.required):
        return Wait(f"{len(state.votes)} of {state.required} labels")
    if state.required <= 1:
        vote = state.votes[0]
        if confirm_single and review is not None and state.prelabel is not None and state.top_k:
            # A label set changed since the model was trained can name more labels than the project has now.
            n_classes = max(review.n_classes, len({*(label for label, _ in state.top_k), vote.label}))
            posterior = label_posterior(state.top_k, [(vote.annotator, vote.label)], reliability, n_classes,
                                        shown_error_share=review.shown_error_share).get(vote.label, 0.0)
            if posterior >= review.min_confidence:
                return Final(vote.label, Provenance.SINGLE_REVIEW, posterior, verified=True)
            return (SecondOpinion if second_opinion else Escalate)(
                f"single reviewer's {vote.label!r} against the pre-label {state.prelabel[0]!r} "
                f"({state.prelabel[1]:.2f}): posterior {posterior:.3f} < {review.min_confidence}",
                {"votes": [[vote.annotator, vote.label]], "prelabel": list(state.prelabel), "posterior": posterior},
            )
        if confirm_single and state.prelabel is not None and vote.label != state.prelabel[0]:
            return (SecondOpinion if second_opinion else Escalate)(
                f"single reviewer overrides the pre-label {state.prelabel[0]!r} ({state.prelabel[1]:.2f}) "
                f"with {vote.label!r}",
                {"votes": [[vote.annotator, vote.label]], "prelabel": list(state.prelabel)},
            )
        return Final(vote.label, Provenance.SINGLE_REVIEW, reliability.get(vote.annotator, 0.9), verified=True)
    label, confidence, resolved = consensus([(v.annotator, v.label) for v in state.votes], reliability)
    if not resolved:
        return Escalate(
            f"annotators disagree: best {label!r} at confidence {confidence:.2f}",
            {"votes": [[v.annotator, v.label] for v in state.votes], "confidence": confidence},
        )
    return Final(label, Provenance.CONSENSUS, confidence, verified=True)
