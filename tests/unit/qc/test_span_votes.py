"""qc's spans items: an answer as a comparable vote label, and consensus over answer keys."""

import pytest

from schemas.spans import Span, answer_key
from services.qc.domain.spans import span_agreement, span_consensus, spans_of, vote_label

ANA, LIMA = Span(start=0, end=3, label="person", confidence=0.8), Span(start=12, end=16, label="location")


def test_a_spans_answer_is_its_key_and_back() -> None:
    assert vote_label("yes", None) == "yes"
    label = vote_label("__spans__", (LIMA, ANA))
    assert label == answer_key((ANA, LIMA)) and spans_of(label) == (ANA.model_copy(update={"confidence": None}), LIMA)
    assert spans_of(vote_label("__spans__", ())) == ()


def test_consensus_keeps_what_enough_annotators_marked_and_takes_their_latest_answer() -> None:
    both, ana = answer_key((ANA, LIMA)), answer_key((ANA,))
    merged, confidence, resolved = span_consensus([("a", both), ("b", both), ("c", both)], {}, min_confidence=0.75)
    assert resolved and spans_of(merged) == spans_of(both) and confidence > 0.75
    merged, _, resolved = span_consensus([("a", both), ("b", both), ("c", ana)], {}, min_confidence=0.75)
    assert not resolved, "2 of 3 on one span, unknown reliabilities: an expert decides"
    merged, _, resolved = span_consensus([("a", both), ("b", both), ("c", ana), ("c", both)], {},
                                         min_confidence=0.75)
    assert resolved and merged == both, "c's latest answer counts, as with label votes"


def test_agreement_on_spans_is_span_f1_between_answers_to_one_item() -> None:
    both, ana, lima = answer_key((ANA, LIMA)), answer_key((ANA,)), answer_key((LIMA,))
    report = span_agreement([("i", "a", both), ("i", "b", ana), ("j", "a", ana), ("j", "b", lima), ("j", "b", ana),
                             ("k", "a", both)])
    assert (report.items, report.multiply_labelled) == (3, 2)
    # i: a has 2, b 1 in common -> F1 2/3; j: b's latest answer agrees -> 1.0
    assert report.mean_f1 == pytest.approx((2 / 3 + 1.0) / 2)
    assert report.pairs == (("a", "b", pytest.approx((2 / 3 + 1.0) / 2), 2),)
    assert span_agreement([("i", "a", both)]).mean_f1 is None
