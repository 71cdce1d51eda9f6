"""Annotator and project tallies as folds over facts, the suspension rule on them, and the facts' ids."""

from schemas.events import EvidenceKind
from schemas.keys import annotator_key, item_key
from services.qc.domain.tally import (
    AnnotatorTally,
    ProjectTally,
    SuspensionRule,
    fold_annotator,
    fold_project,
)
from services.qc.evidence import fact

RULE = SuspensionRule(golden_threshold=0.8, golden_min_evidence=10, verdict_threshold=0.4, verdict_min_evidence=10)


def _golden(n: int, correct: bool, annotator: str = "ann") -> list:
    return [fact("p", annotator, EvidenceKind.GOLDEN, f"label-{correct}-{i}", f"g{i}", correct) for i in range(n)]


def test_an_annotator_is_suspended_at_the_fact_that_made_it_due_whatever_the_batch():
    misses = _golden(12, False)
    whole, decided = fold_annotator(AnnotatorTally(), misses, RULE, suspended=False)
    assert (whole.golden_n, whole.golden_correct) == (12, 0)
    assert decided is not None and decided.evidence["golden_n"] == 10, "the count when it first became due"
    first, early = fold_annotator(AnnotatorTally(), misses[:9], RULE, suspended=False)
    assert early is None
    rest, late = fold_annotator(first, misses[9:], RULE, suspended=False)
    assert rest == whole and late == decided, "cut into two batches: the same tally and the same decision"


def test_a_suspended_annotator_is_not_suspended_again_and_a_good_one_never():
    _, again = fold_annotator(AnnotatorTally(), _golden(12, False), RULE, suspended=True)
    assert again is None
    good, decided = fold_annotator(AnnotatorTally(), _golden(30, True), RULE, suspended=False)
    assert decided is None and good.golden.lower > 0.8


def test_expert_verdicts_suspend_with_their_own_evidence():
    overturned = [fact("p", "ann", EvidenceKind.VERDICT, item_key("p", f"i{i}"), f"i{i}", False) for i in range(10)]
    tally, decided = fold_annotator(AnnotatorTally(labels=3), overturned, RULE, suspended=False)
    assert (tally.verdicts_n, tally.verdicts_upheld, tally.labels) == (10, 0, 3)
    assert decided is not None and decided.evidence["verdicts_n"] == 10 and decided.evidence["verdicts_upheld"] == 0
    assert "experts upheld 0%" in decided.message and decided.review_evidence == {"expert_upheld": 0.0}


def test_labels_count_towards_drift_and_other_kinds_leave_an_annotator_alone():
    facts = [fact("p", "ann", EvidenceKind.LABELLED, f"e{i}", f"i{i}") for i in range(4)]
    facts.append(fact("p", "ann", EvidenceKind.FINALIZED, "x", "i0"))
    tally, decided = fold_annotator(AnnotatorTally(), facts, RULE, suspended=False)
    assert tally == AnnotatorTally(labels=4) and decided is None


def test_a_project_counts_labels_first_final_labels_and_spot_checks():
    facts = [fact("p", None, EvidenceKind.LABELLED, f"e{i}", f"i{i}") for i in range(5)]
    facts += [fact("p", None, EvidenceKind.FINALIZED, item_key("p", f"i{i}"), f"i{i}") for i in range(3)]
    facts += [fact("p", None, EvidenceKind.SPOT_CHECK, f"f{i}", f"i{i}", i != 0) for i in range(4)]
    assert fold_project(ProjectTally(), facts) == ProjectTally(labels=5, finals=3, spot_n=4, spot_correct=3)


def test_a_fact_has_one_id_per_source_and_per_whose_statistics_it_counts_in():
    same = fact("p", "ann", EvidenceKind.LABELLED, "event-1", "i1")
    assert fact("p", "ann", EvidenceKind.LABELLED, "event-1", "i1").event_id == same.event_id
    assert fact("p", None, EvidenceKind.LABELLED, "event-1", "i1").event_id != same.event_id
    assert fact("p", "ann", EvidenceKind.GOLDEN, "event-1", "i1").event_id != same.event_id
    assert same.key == annotator_key("p", "ann") == "p/ann"
    assert fact("p", None, EvidenceKind.LABELLED, "event-1", "i1").key == "p"


def test_item_keys_are_project_slash_item():
    assert item_key("banking", "i-1") == "banking/i-1"
