"""qc's span rules: exact-match F1, agreement and the reliability-weighted merge."""

from __future__ import annotations

import pytest

from schemas.spans import Span
from services.qc.domain.spans import corpus_f1, golden_score, merge_spans, pairwise_f1, span_f1, word_alpha


def S(start: int, end: int, label: str = "person") -> Span:
    return Span(start=start, end=end, label=label)


def test_span_f1_is_exact_match_on_offsets_and_type() -> None:
    gold = [S(0, 4), S(10, 15, "location")]
    assert span_f1(gold, gold).f1 == 1.0
    score = span_f1([S(0, 4), S(10, 14, "location")], gold)  # one boundary off counts as wrong
    assert (score.precision, score.recall, score.f1) == (0.5, 0.5, 0.5)
    assert span_f1([], []).f1 == 1.0 and span_f1([S(0, 4)], []).f1 == 0.0
    assert golden_score([S(0, 4, "group")], [S(0, 4)]) == 0.0


def test_corpus_f1_pools_counts_over_items() -> None:
    score = corpus_f1([([S(0, 4)], [S(0, 4)]), ([], [S(1, 2)]), ([S(3, 5)], [])])
    assert (score.true_positives, score.predicted, score.gold) == (1, 2, 2)
    assert score.f1 == pytest.approx(0.5)


def test_pairwise_f1_averages_over_annotator_pairs() -> None:
    assert pairwise_f1({"a": [S(0, 4)], "b": [S(0, 4)], "c": []}) == pytest.approx((1.0 + 0.0 + 0.0) / 3)
    assert pairwise_f1({"a": [S(0, 4)]}) is None


def test_word_alpha_is_one_for_identical_answers_and_lower_for_disagreement() -> None:
    text = "Anna met Bob in Paris"
    same = {"a": [S(0, 4), S(16, 21, "location")], "b": [S(0, 4), S(16, 21, "location")]}
    differ = {"a": [S(0, 4), S(16, 21, "location")], "b": [S(9, 12)]}
    assert word_alpha([(text, same), (text, same)]) == pytest.approx(1.0)
    assert word_alpha([(text, same), (text, differ)]) < 0.8
    assert word_alpha([(text, {"a": [S(0, 4)]})]) is None


def test_merge_keeps_what_the_reliable_majority_marked_and_drops_a_lone_extra() -> None:
    answers = {"a": [S(0, 4), S(9, 12)], "b": [S(0, 4)], "c": [S(0, 3)]}
    merged = merge_spans(answers, {"a": 0.9, "b": 0.9, "c": 0.9})
    assert merged.spans == (S(0, 4),) and merged.resolved


def test_merge_follows_reliability_when_annotators_split() -> None:
    answers = {"good": [S(0, 8, "location")], "poor": [S(0, 4, "location")]}
    merged = merge_spans(answers, {"good": 0.97, "poor": 0.5})
    assert merged.spans == (S(0, 8, "location"),)
    tied = merge_spans(answers, {"good": 0.9, "poor": 0.9})
    assert not tied.resolved  # an even split goes to an expert
