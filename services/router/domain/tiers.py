"""Decides which tier of human attention an item gets from its calibrated pre-label and its state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

# Defined once, in the event contracts; imported here so the rules read in the domain's own terms.
from schemas.events import Thresholds, Tier
from services.router.domain.thresholds import AUTO_OFF, DEFAULT_FLOOR

# RoutingPolicy explains both; RouterSettings defaults to them.
DEFAULT_EXPERT_MARGIN = 0.05
DEFAULT_OOD_SIMILARITY_FLOOR = 0.30

@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """Per-project routing settings that are not learned.

    expert_margin: 0.05 because two labels within five points of calibrated probability are a coin
    toss to the model; majority voting by non-experts tends to split on exactly those items too, so
    they go to someone who can settle the guideline question. Raise it to send more to experts.
    ood_similarity_floor: 0.30 because for all-MiniLM-L6-v2 unrelated sentences score about 0-0.2
    in cosine similarity and paraphrases 0.7+; below 0.30 the nearest labelled item is barely more
    related than a random one, so the model's confidence is not backed by anything it has seen.
    """

    multi_annotators: int = 3
    expert_margin: float = DEFAULT_EXPERT_MARGIN
    ood_similarity_floor: float = DEFAULT_OOD_SIMILARITY_FLOOR

    def __post_init__(self) -> None:
        if self.multi_annotators < 2:
            raise ValueError(f"multi_annotators must be >= 2 for consensus, got {self.multi_annotators}")
        if not 0.0 <= self.expert_margin <= 1.0:
            raise ValueError(f"expert_margin must be in [0, 1], got {self.expert_margin}")
        if not -1.0 <= self.ood_similarity_floor <= 1.0:
            raise ValueError(f"ood_similarity_floor must be a cosine in [-1, 1], got {self.ood_similarity_floor}")


@dataclass(frozen=True, slots=True, init=False)
class Prelabel:
    """The model's calibrated top-k (sorted here, best first) and the item's nearest-neighbour similarity.

    nearest_similarity is the max cosine similarity to any labelled item; None when unknown
    (for example before anything is labelled), in which case no out-of-distribution rule applies.
    """

    top_k: tuple[tuple[str, float], ...] = ()
    nearest_similarity: float | None = None

    def __init__(self, top_k: Sequence[tuple[str, float]] = (), nearest_similarity: float | None = None) -> None:
        ranked = tuple(sorted(((str(lbl), float(p)) for lbl, p in top_k), key=lambda s: -s[1]))
        labels = [lbl for lbl, _ in ranked]
        if any(not lbl for lbl in labels) or len(set(labels)) != len(labels):
            raise ValueError(f"top_k labels must be non-empty and distinct, got {labels}")
        if any(not 0.0 <= p <= 1.0 for _, p in ranked):
            raise ValueError(f"top_k probabilities must be in [0, 1], got {ranked}")
        if nearest_similarity is not None and not -1.0 <= nearest_similarity <= 1.0:
            raise ValueError(f"nearest_similarity must be a cosine in [-1, 1], got {nearest_similarity}")
        object.__setattr__(self, "top_k", ranked)
        object.__setattr__(self, "nearest_similarity", nearest_similarity)

    @property
    def confidence(self) -> float:
        """Top-1 probability; 0.0 without a prediction."""
        return self.top_k[0][1] if self.top_k else 0.0

    @property
    def margin(self) -> float | None:
        """Top-1 minus top-2 probability (top-2 counts as 0 when only one label came back)."""
        if not self.top_k:
            return None
        return self.top_k[0][1] - (self.top_k[1][1] if len(self.top_k) > 1 else 0.0)


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Where an item goes, how many humans it needs, and why (reasons are shown to leads and experts)."""

    tier: Tier
    required_annotators: int
    spot_check: bool = False
    reasons: tuple[str, ...] = field(default=())


def decide_tier(
    prelabel: Prelabel,
    thresholds: Thresholds,
    policy: RoutingPolicy = RoutingPolicy(),
    *,
    open_flag: bool = False,
    unresolved_disagreement: bool = False,
    spot_check: bool = False,
    evidence_draw: bool = False,
    second_opinion: bool = False,
) -> RoutingDecision:
    """Route one item; edge cases (flag, disagreement, out of distribution, tiny margin) beat confidence.

    spot_check comes from spot_check.is_spot_checked and only matters when the item is auto-accepted:
    it then needs one human to verify the auto label, and that verdict becomes threshold evidence.
    evidence_draw (spot_check.is_evidence_draw) only matters while auto-accept is off, for a single review where
    an auto border could ever be: the review is marked to go first (the gateway leases spot checks first), so
    the evidence that can open auto-accept comes early.
    second_opinion: qc doubts a lone reviewer's label and asks for one more ordinary reviewer (qc's
    finalize.next_step): the item needs two labels, the first one counted, unless an expert rule applies.
    """
    expert_reasons: list[str] = []
    if open_flag:
        expert_reasons.append("item has an open qc flag")
    if unresolved_disagreement:
        expert_reasons.append("annotators disagree and consensus did not resolve it")
    sim = prelabel.nearest_similarity
    if sim is not None and sim < policy.ood_similarity_floor:
        expert_reasons.append(
            f"out of distribution: nearest labelled item similarity {sim:.3f} < {policy.ood_similarity_floor:.2f}"
        )
    margin = prelabel.margin
    if margin is not None and len(prelabel.top_k) > 1 and margin < policy.expert_margin:
        (first, p1), (second, p2) = prelabel.top_k[0], prelabel.top_k[1]
        expert_reasons.append(
            f"top two labels too close: {first!r} {p1:.3f} vs {second!r} {p2:.3f} "
            f"(margin {margin:.3f} < {policy.expert_margin:.2f})"
        )
    if expert_reasons:
        return RoutingDecision(Tier.EXPERT, 1, False, tuple(expert_reasons))
    if second_opinion:
        return RoutingDecision(Tier.MULTI, 2, False, (
            "second opinion: qc doubts the lone reviewer's label; two who agree settle it, else an expert",))

    conf = prelabel.confidence
    if not prelabel.top_k:
        return RoutingDecision(
            Tier.MULTI, policy.multi_annotators, False, ("no model prediction: labelled from scratch by consensus",)
        )
    if conf > thresholds.auto_accept:
        reason = f"confidence {conf:.3f} > auto-accept {thresholds.auto_accept:.3f}"
        if spot_check:
            return RoutingDecision(Tier.AUTO, 1, True, (reason, "selected for spot check: one human verifies it"))
        return RoutingDecision(Tier.AUTO, 0, False, (reason,))
    if conf >= thresholds.single_review:
        reason = f"confidence {conf:.3f} in [{thresholds.single_review:.3f}, {thresholds.auto_accept:.3f}]"
        if evidence_draw and thresholds.auto_accept >= AUTO_OFF and conf > DEFAULT_FLOOR:
            return RoutingDecision(Tier.SINGLE, 1, True, (
                reason, "drawn to verify first while auto-accept is off: its review is evidence for the auto border"))
        return RoutingDecision(Tier.SINGLE, 1, False, (reason,))
    return RoutingDecision(
        Tier.MULTI,
        policy.multi_annotators,
        False,
        (
            f"confidence {conf:.3f} < single-review {thresholds.single_review:.3f}: "
            f"consensus of {policy.multi_annotators}",
        ),
    )
