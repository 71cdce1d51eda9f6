"""Promotion: an item queued for humans that the auto-accept border, since moved down, now auto-accepts.

An item is routed when it is pre-labelled. A project ingested in bulk is routed before any evidence exists, and
without evidence the auto border is off (thresholds.NO_EVIDENCE), so every item is queued for people. The border
opens and moves down as the verified pre-labels come back, yet the items already queued would keep their human
tier: the live benchmark measured 0 auto-accepted items on 1,500 ingested at once, with the border open at 0.97
long before the queue ran dry. Annotators are offered the least certain items first (the gateway's priority), so
the queue's tail is exactly the confident items a lowered border covers.

When the border moves down, each such item whose routing would now be auto gets a second decision: tier auto, no
human. The evidence that moved the border comes from the same population (the single and multi tiers' verified
pre-labels), so its guarantee applies to the promoted items as much as to new ones. An item drawn for a spot
check keeps its human review: it is one label either way, and the review already verifies the pre-label.
"""

from __future__ import annotations

from schemas.events import ItemRouted, Thresholds, Tier
from services.router.domain.tiers import Prelabel, RoutingDecision, RoutingPolicy, decide_tier

PROMOTABLE = (Tier.SINGLE, Tier.MULTI)


def promotion(decision: ItemRouted, thresholds: Thresholds, policy: RoutingPolicy,
              spot_check: bool) -> RoutingDecision | None:
    """The item's new routing when `thresholds` auto-accept what `decision` sent to humans; None otherwise.

    Decided on the inputs of the first decision (its top-k and its nearest labelled neighbour then), so an
    expert rule that applied then applies now; golden and spans items are never promoted.
    """
    if decision.golden or decision.spans is not None or decision.tier not in PROMOTABLE or not decision.top_k:
        return None
    nearest = max((n.similarity for n in decision.neighbours), default=None)
    routed = decide_tier(Prelabel([(s.label, s.probability) for s in decision.top_k], nearest), thresholds, policy,
                         spot_check=spot_check)
    if routed.tier is Tier.AUTO and routed.required_annotators == 0:
        return routed
    return None


def moved_down(old: Thresholds, new: Thresholds) -> bool:
    """Whether a change can promote anything: only a lower auto border auto-accepts more."""
    return new.auto_accept < old.auto_accept
