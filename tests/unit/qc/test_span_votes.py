"""qc's spans items: an answer as a comparable vote label, and consensus over answer keys."""

import krippendorff
import numpy as np
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


def test_agreement_on_spans_has_krippendorffs_alpha_on_the_words_of_items_answered_twice() -> None:
    text = "Ana flew to Lima"  # words: Ana flew to Lima
    both, ana, lima = answer_key((ANA, LIMA)), answer_key((ANA,)), answer_key((LIMA,))
    records = [("i", "a", both), ("i", "b", ana), ("j", "a", ana), ("j", "b", lima), ("j", "b", ana),
               ("k", "a", both)]
    report = span_agreement(records, {"i": text, "j": text, "k": text})
    # Units are the 8 words of i and j (k has one answer); a and b differ only on i's "Lima" (location vs O).
    # Nominal alpha = 1 - (n - 1) * disagreeing pairs / sum of n_c * n_k over c != k, with 16 pairable values:
    # person 4, O 11, location 1, and the disagreement (location, O) counted both ways.
    assert report.alpha_items == 2
    assert report.alpha == pytest.approx(1 - 15 * 2 / (2 * (4 * 11 + 4 * 1 + 11 * 1)))
    tags = {"person": 0.0, "O": 1.0, "location": 2.0}
    a = ["person", "O", "O", "location", "person", "O", "O", "O"]
    b = ["person", "O", "O", "O", "person", "O", "O", "O"]
    assert report.alpha == pytest.approx(krippendorff.alpha(
        reliability_data=np.array([[tags[t] for t in a], [tags[t] for t in b]]), level_of_measurement="nominal"))
    # Without the texts there are no words to compare; with one item's, alpha is over its four words only.
    assert span_agreement(records).alpha is None and span_agreement(records).alpha_items == 0
    assert span_agreement(records, {"j": text}).alpha == pytest.approx(1.0), "b's latest answer to j agrees with a's"
    assert span_agreement(records, {"i": text}).alpha_items == 1
    nothing = [("i", "a", answer_key(())), ("i", "b", answer_key(()))]
    assert span_agreement(nothing, {"i": text}).alpha is None, "every word O: alpha is undefined"
