"""Expert verdicts on lone reviewers, and the suspension rule they feed."""

from services.qc.domain.golden import first_flag_at
from services.qc.domain.verdicts import Verdict, lone_reviewer_verdict
from services.qc.finalize import Vote


def test_an_expert_checking_a_lone_reviewer_upholds_or_overturns_them():
    assert lone_reviewer_verdict([Vote("ann-1", "refund"), Vote("exp", "refund", expert=True)]) == Verdict(
        "ann-1", True)
    assert lone_reviewer_verdict([Vote("ann-1", "refund"), Vote("exp", "top_up", expert=True)]) == Verdict(
        "ann-1", False)


def test_the_last_expert_vote_is_the_verdict():
    votes = [Vote("ann-1", "refund"), Vote("exp-1", "top_up", expert=True), Vote("exp-2", "refund", expert=True)]
    assert lone_reviewer_verdict(votes) == Verdict("ann-1", True)


def test_no_verdict_without_exactly_one_ordinary_vote_and_an_expert():
    assert lone_reviewer_verdict([Vote("ann-1", "refund")]) is None
    assert lone_reviewer_verdict([Vote("exp", "refund", expert=True)]) is None
    assert lone_reviewer_verdict([Vote("a", "x"), Vote("b", "y"), Vote("exp", "x", expert=True)]) is None
    assert lone_reviewer_verdict([]) is None


def test_the_default_bar_catches_a_random_clicker_at_once_and_spares_reviewers_upheld_over_half_the_time():
    from services.qc.settings import QcSettings

    s = QcSettings()
    rule = {"threshold": s.expert_agreement_threshold, "min_evidence": s.expert_agreement_min_evidence}
    assert first_flag_at([False] * 10, **rule) == 10
    assert first_flag_at(([False] * 4 + [True]) * 10, **rule) is not None  # upheld a fifth of the time
    # 58% upheld, the lowest of the demo's ordinary annotators, overturned five times in a row each round
    assert first_flag_at(([False] * 5 + [True] * 7) * 10, **rule) is None
    assert first_flag_at(([False] * 2 + [True] * 3) * 40, **rule) is None  # 60%, spread out
