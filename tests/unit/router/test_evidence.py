"""The pure rules of threshold evidence: sample weights, the relearn count, adopting recommendations."""

from __future__ import annotations

import pytest

from services.router.domain.evidence import (
    ProjectLearning,
    adopts_recommendation,
    provisional_verdict,
    record_verified,
    sample_weight,
    unapplied,
)
from services.router.domain.thresholds import AUTO_OFF, NO_EVIDENCE
from services.router.domain.tiers import Thresholds


def test_a_spot_checked_auto_item_weighs_the_inverse_of_the_rate_and_others_one() -> None:
    assert sample_weight("auto", 0.05) == pytest.approx(20.0)
    assert sample_weight("single", 0.05) == 1.0
    assert sample_weight(None, 0.05) == 1.0, "no stored decision: reviewed like any non-auto item"
    with pytest.raises(ValueError):
        sample_weight("auto", 0.0)


def test_every_nth_verified_pre_label_relearns_and_restarts_the_count() -> None:
    state, due = ProjectLearning(), []
    for _ in range(7):
        state, now = record_verified(state, 3)
        due.append(now)
    assert due == [False, False, True, False, False, True, False]
    assert state.unlearned == 1
    assert record_verified(ProjectLearning(), 1) == (ProjectLearning(), True)
    with pytest.raises(ValueError):
        record_verified(ProjectLearning(), 0)


def test_a_recommendation_is_adopted_only_by_a_project_without_thresholds_unless_told_otherwise() -> None:
    fresh, learned = ProjectLearning(), ProjectLearning(Thresholds(auto_accept=0.9, single_review=0.5))
    assert adopts_recommendation(fresh, adopt_every=False)
    assert not adopts_recommendation(learned, adopt_every=False)
    assert adopts_recommendation(learned, adopt_every=True)
    assert fresh.in_force == NO_EVIDENCE and fresh.in_force.auto_accept == AUTO_OFF, "no evidence: auto-accept off"
    assert learned.in_force == Thresholds(auto_accept=0.9, single_review=0.5)


def test_a_batch_handled_again_skips_what_the_stored_state_already_applied() -> None:
    batch = ["e1", "e2", "e3", "e4"]
    assert unapplied(batch, None) == 0, "a project's first evidence"
    assert unapplied(batch, "e2") == 2, "saved at a change on e2 before a crash: e3 and e4 are new"
    assert unapplied(batch, "e4") == 4
    assert unapplied(batch, "e0") == 0, "applied in an earlier batch: all of this one is new"


def test_a_disputed_prelabel_counts_as_wrong_by_the_chance_its_challenger_is_right() -> None:
    assert provisional_verdict("refund", [["ann-1", "card_lost"]]) == (False, 1.0)
    assert provisional_verdict("refund", [["ann-1", "card_lost"]], posterior=0.3) == (False, 0.3)
    assert provisional_verdict("refund", [["ann-1", "refund"], ["ann-2", "card_lost"]]) == (False, 1.0)
    assert provisional_verdict("refund", [["ann-1", "refund"]]) == (True, 1.0)
    assert provisional_verdict("refund", []) is None
    assert provisional_verdict("refund", [["ann-1", "card_lost"]], posterior=0.0) is None
