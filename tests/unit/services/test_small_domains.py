"""Pure pieces of the services: final-label decisions, text checks, tokens, neighbours, lineage, promotion."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from labelmesh.neighbours import LabelledIndex
from schemas.events import Provenance, Tier
from services.gateway.auth import bearer, hash_token, new_token
from services.prelabeler.domain.text import check_text
from services.qc.finalize import Escalate, Final, ItemState, SecondOpinion, Vote, Wait, next_step
from services.router.domain.thresholds import Observation
from services.trainer.domain.evaluation import Evaluation, decide_promotion, recommend_thresholds
from services.trainer.domain.lineage import in_holdout, training_set_version


def majority(votes, reliability):  # type: ignore[no-untyped-def]
    labels = [label for _, label in votes]
    best = max(set(labels), key=labels.count)
    share = labels.count(best) / len(labels)
    return best, share, share > 0.5


def test_known_answers_win_and_unrouted_items_wait() -> None:
    assert next_step(ItemState(trusted_label="a"), {}, majority) == Final("a", Provenance.IMPORTED, 1.0, False)
    assert isinstance(next_step(ItemState(votes=(Vote("x", "a"),)), {}, majority), Wait)


def test_auto_single_and_consensus() -> None:
    auto = ItemState(tier=Tier.AUTO, required=0, prelabel=("a", 0.99))
    assert next_step(auto, {}, majority) == Final("a", Provenance.AUTO, 0.99, False)
    spot = ItemState(tier=Tier.AUTO, required=1, spot_check=True, prelabel=("a", 0.99))
    assert isinstance(next_step(spot, {}, majority), Wait)
    checked = ItemState(tier=Tier.AUTO, required=1, prelabel=("a", 0.99), votes=(Vote("x", "b"),))
    step = next_step(checked, {"x": 0.8}, majority)
    assert step == Final("b", Provenance.SINGLE_REVIEW, 0.8, True)
    multi = ItemState(tier=Tier.MULTI, required=3, votes=(Vote("x", "a"), Vote("y", "a")))
    assert isinstance(next_step(multi, {}, majority), Wait)
    done = ItemState(tier=Tier.MULTI, required=3, votes=(Vote("x", "a"), Vote("y", "a"), Vote("z", "b")))
    assert next_step(done, {}, majority) == Final("a", Provenance.CONSENSUS, 2 / 3, True)


def test_an_item_promoted_to_auto_keeps_its_auto_label_whenever_a_claimed_label_arrives() -> None:
    promoted = ItemState(tier=Tier.AUTO, required=0, prelabel=("a", 0.97), votes=(Vote("x", "b"),))
    assert next_step(promoted, {"x": 0.8}, majority) == Final("a", Provenance.AUTO, 0.97, False)


def test_a_doubted_lone_reviewer_gets_a_second_opinion_then_an_expert_only_if_the_two_disagree() -> None:
    overridden = ItemState(tier=Tier.SINGLE, required=1, prelabel=("a", 0.97), votes=(Vote("x", "b"),))
    asked = next_step(overridden, {}, majority, confirm_single=True, second_opinion=True)
    assert isinstance(asked, SecondOpinion) and asked.evidence["votes"] == [["x", "b"]]
    assert isinstance(next_step(overridden, {}, majority, confirm_single=True), Escalate), "off: straight to an expert"
    waiting = replace(overridden, second_opinion=True)
    assert isinstance(next_step(waiting, {}, majority, confirm_single=True, second_opinion=True), Wait)
    rerouted = replace(waiting, tier=Tier.MULTI, required=2)
    assert isinstance(next_step(rerouted, {}, majority, confirm_single=True, second_opinion=True), Wait)
    agreed = replace(rerouted, votes=(Vote("x", "b"), Vote("y", "b")))
    assert next_step(agreed, {}, majority, confirm_single=True, second_opinion=True).provenance is Provenance.CONSENSUS
    split = replace(rerouted, votes=(Vote("x", "b"), Vote("y", "a")))
    assert isinstance(next_step(split, {}, majority, confirm_single=True, second_opinion=True), Escalate)


def test_disagreement_escalates_and_expert_settles_it() -> None:
    split = ItemState(tier=Tier.MULTI, required=2, votes=(Vote("x", "a"), Vote("y", "b")))
    step = next_step(split, {}, majority)
    assert isinstance(step, Escalate) and step.evidence["votes"] == [["x", "a"], ["y", "b"]]
    waiting = ItemState(tier=Tier.MULTI, required=2, escalated=True, votes=split.votes)
    assert isinstance(next_step(waiting, {}, majority), Wait)
    settled = ItemState(tier=Tier.EXPERT, required=1, escalated=True, votes=(*split.votes, Vote("e", "b", True)))
    assert next_step(settled, {}, majority) == Final("b", Provenance.EXPERT, 1.0, True)
    relabel = ItemState(tier=Tier.EXPERT, required=1, final_label="a", votes=(Vote("e", "c", True),))
    assert next_step(relabel, {}, majority).provenance is Provenance.CORRECTED


def test_text_checks() -> None:
    assert check_text("  ", 10).problem == "empty text"
    assert "invalid UTF-8" in (check_text("bad \udcff", 10).problem or "")
    long = check_text("x" * 25, 10)
    assert long.truncated and long.text == "x" * 10 and long.problem is None


def test_tokens_are_hashed_and_parsed() -> None:
    token = new_token()
    assert len(token) >= 40 and hash_token(token) != token and len(hash_token(token)) == 64
    assert bearer((("authorization", f"Bearer {token}"),)) == token
    assert bearer((("authorization", "Basic abc"),)) is None
    assert bearer(None) is None


def test_neighbour_index_finds_nearest_and_relabels() -> None:
    index = LabelledIndex()
    index.upsert("a", "x", np.array([1.0, 0.0]))
    index.upsert("b", "y", np.array([0.0, 1.0]))
    index.upsert("c", "x", np.array([0.9, 0.1]))
    hits = index.nearest(np.array([1.0, 0.05]), k=2)
    assert [h.item_id for h in hits] == ["a", "c"] and hits[0].similarity > hits[1].similarity
    index.upsert("a", "z", np.array([1.0, 0.0]))
    assert index.label_of("a") == "z" and len(index) == 3
    assert [h.item_id for h in index.nearest(np.array([1.0, 0.0]), k=1, exclude="a")] == ["c"]
    for i in range(300):  # growth past the initial capacity keeps every row
        index.upsert(f"n{i}", "y", np.array([0.0, 1.0]))
    assert len(index) == 303
    with pytest.raises(ValueError):
        index.upsert("bad", "x", np.array([1.0, 0.0, 0.0]))


def test_training_set_version_is_a_content_hash() -> None:
    a = training_set_version([("i1", 1, "x"), ("i2", 1, "y")])
    assert a == training_set_version([("i2", 1, "y"), ("i1", 1, "x")])
    assert a != training_set_version([("i1", 2, "z"), ("i2", 1, "y")])
    share = np.mean([in_holdout("p", f"i{i}", 0.1) for i in range(5000)])
    assert 0.08 < share < 0.12


def judged(outcomes: str) -> Evaluation:
    """An evaluation from per-item outcomes on a shared held-out set: '1' right, '0' wrong."""
    obs = tuple(Observation(0.9, o == "1") for o in outcomes)
    return Evaluation(len(obs), sum(o.correct for o in obs) / len(obs), 0.0, obs)


def test_promotion_rules() -> None:
    good = Evaluation(100, 0.90, 0.02, ())
    worse = Evaluation(100, 0.85, 0.02, ())
    assert decide_promotion(good, None, 0.05, 30).promote
    assert decide_promotion(good, worse, 0.05, 30).promote
    kept = decide_promotion(worse, good, 0.05, 30)  # no per-item outcomes: accuracies compared as they are
    assert not kept.promote and "worse" in kept.reason
    assert decide_promotion(Evaluation(5, 0.1, 0.0, ()), good, 0.05, 30).promote
    with pytest.raises(ValueError, match="alpha"):
        decide_promotion(good, worse, 0.0, 30)


def test_promotion_is_a_paired_test_on_the_shared_held_out_items() -> None:
    # 200 items both models get right, then the items only one of them gets right.
    champion = judged("1" * 200 + "1" * 8 + "0" * 4 + "0" * 30)
    slightly_worse = judged("1" * 200 + "0" * 8 + "1" * 4 + "0" * 30)  # 8 lost, 4 won: p = 0.19, noise
    decision = decide_promotion(slightly_worse, champion, 0.05, 30)
    assert slightly_worse.accuracy < champion.accuracy - 0.01  # the old 1-point tolerance would have kept the champion
    assert decision.promote and "p=0.194" in decision.reason
    clearly_worse = judged("1" * 200 + "0" * 12 + "0" * 30)  # 12 lost, 0 won: p = 0.0002
    rejected = decide_promotion(clearly_worse, champion, 0.05, 30)
    assert not rejected.promote and "worse" in rejected.reason
    assert decide_promotion(champion, champion, 0.05, 30).promote  # no discordant items: nothing shows it worse


def test_confirm_single_escalates_a_reviewer_who_overrides_the_prelabel() -> None:
    overridden = ItemState(tier=Tier.SINGLE, required=1, prelabel=("a", 0.7), votes=(Vote("x", "b"),))
    assert next_step(overridden, {}, majority) == Final("b", Provenance.SINGLE_REVIEW, 0.9, True)  # default: as before
    step = next_step(overridden, {}, majority, confirm_single=True)
    assert isinstance(step, Escalate) and step.evidence == {"votes": [["x", "b"]], "prelabel": ["a", 0.7]}
    confirmed = ItemState(tier=Tier.SINGLE, required=1, prelabel=("a", 0.7), votes=(Vote("x", "a"),))
    assert next_step(confirmed, {"x": 0.85}, majority, confirm_single=True) == Final(
        "a", Provenance.SINGLE_REVIEW, 0.85, True)
    spot = ItemState(tier=Tier.AUTO, required=1, spot_check=True, prelabel=("a", 0.99), votes=(Vote("x", "c"),))
    assert isinstance(next_step(spot, {}, majority, confirm_single=True), Escalate)
    # Once escalated, the expert's label is final, whatever the pre-label said.
    settled = ItemState(tier=Tier.EXPERT, required=1, escalated=True, prelabel=("a", 0.7),
                        votes=(Vote("x", "b"), Vote("e", "b", True)))
    assert next_step(settled, {}, majority, confirm_single=True) == Final("b", Provenance.EXPERT, 1.0, True)


def test_review_with_the_model_keeps_plausible_overrides_and_escalates_doubtful_ones() -> None:
    from services.qc.finalize import ReviewPolicy

    review = ReviewPolicy(n_classes=77)
    shaky = (("a", 0.45), ("b", 0.40), ("c", 0.05), ("d", 0.04), ("e", 0.03))
    confident = (("a", 0.90), ("b", 0.03), ("c", 0.02))

    def single(top, label):  # type: ignore[no-untyped-def]
        return ItemState(tier=Tier.SINGLE, required=1, prelabel=top[0], top_k=top, votes=(Vote("x", label),))

    kept = next_step(single(shaky, "b"), {"x": 0.9}, majority, confirm_single=True, review=review)
    assert isinstance(kept, Final) and kept.label == "b" and kept.provenance is Provenance.SINGLE_REVIEW
    assert kept.confidence >= review.min_confidence
    doubt = next_step(single(confident, "b"), {"x": 0.9}, majority, confirm_single=True, review=review)
    assert isinstance(doubt, Escalate) and doubt.evidence["posterior"] < review.min_confidence
    confirmed = next_step(single(confident, "a"), {"x": 0.9}, majority, confirm_single=True, review=review)
    assert isinstance(confirmed, Final) and confirmed.label == "a"
    # Without the top-k (or without review) it is confirm_single's plain rule: any override escalates.
    plain = ItemState(tier=Tier.SINGLE, required=1, prelabel=("a", 0.45), votes=(Vote("x", "b"),))
    assert isinstance(next_step(plain, {"x": 0.9}, majority, confirm_single=True, review=review), Escalate)
    assert isinstance(next_step(single(shaky, "b"), {"x": 0.9}, majority, confirm_single=True), Escalate)
    # confirm_single off: the reviewer's word is final whatever the model says.
    assert next_step(single(confident, "b"), {"x": 0.9}, majority, review=review).label == "b"
    with pytest.raises(ValueError, match="min_confidence"):
        ReviewPolicy(n_classes=77, min_confidence=1.0)
    # More labels shown and voted than the project now has (a retired label): still decided, not an error.
    odd = next_step(single(shaky, "z"), {"x": 0.9}, majority, confirm_single=True, review=ReviewPolicy(n_classes=3))
    assert isinstance(odd, Final | Escalate)


def test_auto_labels_do_not_judge_models() -> None:
    from services.trainer.domain.evaluation import judges_models

    assert not judges_models("auto")
    assert all(judges_models(p) for p in ("single_review", "consensus", "expert", "corrected", "imported", None))
    assert judges_models("auto", exclude_auto=False)


def test_a_first_model_s_few_held_out_items_recommend_no_auto_accept():
    # 40 held-out items, all right at 0.97: far from the 149 clean ones a 2% bound needs, so the trainer
    # recommends auto-accept off instead of passing on the seed's 0.95 as if it had evidence.
    few = tuple(Observation(0.97, True) for _ in range(40))
    assert recommend_thresholds(Evaluation(40, 1.0, 0.0, few), 0.02).auto_accept == 1.0
    # 400 clean ones at 0.97 do show a region under target.
    many = tuple(Observation(0.97, True) for _ in range(400))
    assert recommend_thresholds(Evaluation(400, 1.0, 0.0, many), 0.02).auto_accept < 0.97
