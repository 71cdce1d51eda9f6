"""Promotion: which queued items a lowered auto border routes again to auto, and which it leaves with people."""

from __future__ import annotations

import pytest

from schemas.events import ItemRouted, LabelScore, Neighbour, Thresholds, Tier
from services.router.domain.promote import moved_down, promotion
from services.router.domain.tiers import RoutingPolicy

OPEN = Thresholds(auto_accept=0.90, single_review=0.30)
POLICY = RoutingPolicy()


def queued(p1: float, p2: float = 0.01, *, tier: Tier = Tier.SINGLE, similarity: float = 0.8,
           **extra: object) -> ItemRouted:
    return ItemRouted(
        event_id="r1", producer="router", project="p", item_id="i1", tier=tier,
        required_annotators=3 if tier is Tier.MULTI else 1,
        top_k=(LabelScore(label="refund", probability=p1), LabelScore(label="card_lost", probability=p2)),
        neighbours=(Neighbour(item_id="n1", label="refund", similarity=similarity),),
        thresholds=Thresholds(auto_accept=1.0, single_review=0.30), **extra)


def test_a_queued_item_above_the_new_border_is_promoted_with_its_reasons() -> None:
    routed = promotion(queued(0.93), OPEN, POLICY, spot_check=False)
    assert routed is not None and (routed.tier, routed.required_annotators) == (Tier.AUTO, 0)
    assert "0.930 > auto-accept 0.900" in routed.reasons[0]


@pytest.mark.parametrize(("item", "spot_check", "why"), [
    (queued(0.90), False, "at the border is not above it"),
    (queued(0.93), True, "drawn for a spot check: keeps its one review"),
    (queued(0.93, 0.90), False, "top two within the expert margin"),
    (queued(0.93, similarity=0.1), False, "out of distribution"),
    (queued(0.93, tier=Tier.EXPERT), False, "an expert's item"),
    (queued(0.93, tier=Tier.AUTO), False, "already auto"),
    (queued(0.93, golden=True), False, "golden"),
])
def test_what_is_never_promoted(item: ItemRouted, spot_check: bool, why: str) -> None:
    assert promotion(item, OPEN, POLICY, spot_check) is None, why


def test_a_multi_item_can_be_promoted_too() -> None:
    routed = promotion(queued(0.95, tier=Tier.MULTI), OPEN, POLICY, spot_check=False)
    assert routed is not None and routed.tier is Tier.AUTO


def test_only_a_lower_auto_border_can_promote() -> None:
    assert moved_down(Thresholds(auto_accept=1.0, single_review=0.3), OPEN)
    assert not moved_down(OPEN, Thresholds(auto_accept=0.95, single_review=0.3))
    assert not moved_down(OPEN, Thresholds(auto_accept=0.90, single_review=0.2))

