"""Tier decisions: the seed's bands, the expert edge cases and the spot-check effect on auto items."""

import pytest

from services.router.domain.tiers import (
    Prelabel,
    RoutingDecision,
    RoutingPolicy,
    Thresholds,
    Tier,
    decide_tier,
)

SEED = Thresholds()  # auto > 0.95, single >= 0.70


def pre(p1: float, p2: float | None = None, sim: float | None = 0.8) -> Prelabel:
    top = [("refund", p1)] + ([("card_lost", p2)] if p2 is not None else [])
    return Prelabel(top, nearest_similarity=sim)


@pytest.mark.parametrize(
    ("p1", "p2", "tier", "required"),
    [
        (0.99, 0.005, Tier.AUTO, 0),
        (0.951, 0.01, Tier.AUTO, 0),
        (0.95, 0.02, Tier.SINGLE, 1),  # the seed says "> 95%": exactly 0.95 is a single review
        (0.80, 0.10, Tier.SINGLE, 1),
        (0.70, 0.20, Tier.SINGLE, 1),  # "70-95%" includes 70%
        (0.6999, 0.20, Tier.MULTI, 3),
        (0.40, 0.20, Tier.MULTI, 3),
    ],
)
def test_seed_bands(p1, p2, tier, required):
    decision = decide_tier(pre(p1, p2), SEED)
    assert (decision.tier, decision.required_annotators, decision.spot_check) == (tier, required, False)
    assert decision.reasons, "every decision explains itself"


def test_multi_uses_the_policy_k():
    assert decide_tier(pre(0.5, 0.1), SEED, RoutingPolicy(multi_annotators=5)).required_annotators == 5


def test_tiny_margin_goes_to_expert_with_both_labels_in_the_reason():
    decision = decide_tier(pre(0.45, 0.43), SEED)
    assert decision == RoutingDecision(Tier.EXPERT, 1, False, decision.reasons)
    assert len(decision.reasons) == 1
    assert "'refund'" in decision.reasons[0] and "'card_lost'" in decision.reasons[0]


def test_margin_exactly_at_policy_is_not_an_edge_case():
    assert decide_tier(pre(0.50, 0.25), SEED, RoutingPolicy(expert_margin=0.25)).tier is Tier.MULTI
    assert decide_tier(pre(0.50, 0.2501), SEED, RoutingPolicy(expert_margin=0.25)).tier is Tier.EXPERT


def test_single_label_top_k_has_no_margin_rule():
    assert decide_tier(pre(0.03), SEED).tier is Tier.MULTI


def test_out_of_distribution_beats_high_confidence():
    decision = decide_tier(pre(0.99, 0.005, sim=0.12), SEED)
    assert decision.tier is Tier.EXPERT and decision.required_annotators == 1
    assert "out of distribution" in decision.reasons[0]


def test_unknown_similarity_skips_the_ood_rule():
    assert decide_tier(pre(0.99, 0.005, sim=None), SEED).tier is Tier.AUTO


def test_ood_floor_is_configurable():
    assert decide_tier(pre(0.99, 0.005, sim=0.5), SEED, RoutingPolicy(ood_similarity_floor=0.6)).tier is Tier.EXPERT
    assert decide_tier(pre(0.99, 0.005, sim=0.6), SEED, RoutingPolicy(ood_similarity_floor=0.6)).tier is Tier.AUTO


@pytest.mark.parametrize("state", [{"open_flag": True}, {"unresolved_disagreement": True}])
def test_flag_or_disagreement_beats_high_confidence(state):
    decision = decide_tier(pre(0.99, 0.005), SEED, **state)
    assert decision.tier is Tier.EXPERT and decision.required_annotators == 1 and not decision.spot_check


def test_every_expert_reason_is_reported():
    decision = decide_tier(pre(0.45, 0.44, sim=0.1), SEED, open_flag=True, unresolved_disagreement=True)
    assert decision.tier is Tier.EXPERT
    assert len(decision.reasons) == 4


def test_spot_check_only_affects_auto_items():
    auto = decide_tier(pre(0.99, 0.005), SEED, spot_check=True)
    assert (auto.tier, auto.required_annotators, auto.spot_check) == (Tier.AUTO, 1, True)
    single = decide_tier(pre(0.8, 0.1), SEED, spot_check=True)
    assert (single.tier, single.required_annotators, single.spot_check) == (Tier.SINGLE, 1, False)


def test_no_prediction_means_consensus_from_scratch():
    decision = decide_tier(Prelabel([]), SEED)
    assert (decision.tier, decision.required_annotators) == (Tier.MULTI, 3)


def test_auto_border_of_one_switches_auto_off():
    off = Thresholds(auto_accept=1.0, single_review=0.7)
    assert decide_tier(pre(1.0), off).tier is Tier.SINGLE


def test_learned_thresholds_are_used():
    learned = Thresholds(auto_accept=0.80, single_review=0.55)
    assert decide_tier(pre(0.85, 0.1), learned).tier is Tier.AUTO
    assert decide_tier(pre(0.60, 0.1), learned).tier is Tier.SINGLE


def test_prelabel_sorts_top_k_and_computes_margin():
    p = Prelabel([("b", 0.2), ("a", 0.7)])
    assert p.top_k == (("a", 0.7), ("b", 0.2))
    assert p.confidence == 0.7 and p.margin == pytest.approx(0.5)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: Prelabel([("a", 1.2)]),
        lambda: Prelabel([("a", 0.5), ("a", 0.3)]),
        lambda: Prelabel([("", 0.5)]),
        lambda: Prelabel([("a", 0.5)], nearest_similarity=1.5),
        lambda: Thresholds(auto_accept=0.6, single_review=0.7),
        lambda: Thresholds(auto_accept=1.1),
        lambda: RoutingPolicy(multi_annotators=1),
        lambda: RoutingPolicy(expert_margin=-0.1),
    ],
)
def test_bad_inputs_are_rejected_with_a_message(bad):
    with pytest.raises(ValueError, match=r"\S"):
        bad()


def test_an_evidence_draw_goes_first_only_while_auto_accept_is_off():
    closed = Thresholds(auto_accept=1.0, single_review=0.30)
    drawn = decide_tier(pre(0.90, 0.05), closed, evidence_draw=True)
    assert (drawn.tier, drawn.required_annotators, drawn.spot_check) == (Tier.SINGLE, 1, True)
    assert "drawn to verify first" in drawn.reasons[-1]
    # Open auto-accept, a confidence no auto border can reach, or no draw: an ordinary review.
    assert not decide_tier(pre(0.90, 0.05), Thresholds(auto_accept=0.95, single_review=0.30), evidence_draw=True).spot_check
    assert not decide_tier(pre(0.45, 0.05), closed, evidence_draw=True).spot_check
    assert not decide_tier(pre(0.90, 0.05), closed).spot_check


def test_a_second_opinion_asks_two_unless_an_expert_rule_applies():
    asked = decide_tier(pre(0.97, 0.01), SEED, second_opinion=True)
    assert (asked.tier, asked.required_annotators) == (Tier.MULTI, 2)
    assert decide_tier(pre(0.97, 0.01, sim=0.1), SEED, second_opinion=True).tier is Tier.EXPERT
