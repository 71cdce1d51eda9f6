"""Quality rules for span items: span F1, agreement, reliability-weighted consensus and golden scoring.

An item's answer is a set of spans (start, end, type). Exact match is the unit everywhere, as in the
CoNLL/WNUT entity-level scores: a span with a boundary one word off is wrong, which is what a trainer learns
from. Agreement over words uses the same word segmentation as the model (labelmesh.ml.spans.words), so that
Krippendorff's alpha is over the units an annotator can actually mark.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import krippendorff
import numpy as np

from labelmesh.ml.spans import OUTSIDE, words
from schemas.spans import Span, answer_key
from services.qc.domain.consensus import DEFAULT_MIN_CONFIDENCE, DEFAULT_UNKNOWN_RELIABILITY, decide

Key = tuple[int, int, str]
NONE = "none"  # a vote that the cluster holds no entity


def key(span: Span) -> Key:
    return (span.start, span.end, span.label)


@dataclass(frozen=True, slots=True)
class SpanScore:
    precision: float
    recall: float
    f1: float
    true_positives: int
    predicted: int
    gold: int


def span_f1(predicted: Sequence[Span], gold: Sequence[Span]) -> SpanScore:
    """Entity-level exact-match precision, recall and F1 of one answer (or one corpus, spans pooled)."""
    return span_f1_counts(len({key(s) for s in predicted} & {key(s) for s in gold}), len(predicted), len(gold))


def span_f1_counts(tp: int, predicted: int, gold: int) -> SpanScore:
    """F1 from pooled counts; an item (or corpus) with no spans on either side scores 1.0."""
    precision = tp / predicted if predicted else 1.0
    recall = tp / gold if gold else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return SpanScore(precision, recall, f1, tp, predicted, gold)


def corpus_f1(pairs: Sequence[tuple[Sequence[Span], Sequence[Span]]]) -> SpanScore:
    """Micro-averaged entity-level F1 over (predicted, gold) pairs: the figure CoNLL and WNUT report."""
    tp = sum(len({key(s) for s in p} & {key(s) for s in g}) for p, g in pairs)
    return span_f1_counts(tp, sum(len(p) for p, _ in pairs), sum(len(g) for _, g in pairs))


def pairwise_f1(answers: Mapping[str, Sequence[Span]]) -> float | None:
    """Mean span F1 over every pair of annotators of one item (symmetric); None with fewer than two."""
    pairs = [span_f1(answers[a], answers[b]).f1 for a, b in combinations(sorted(answers), 2)]
    return float(np.mean(pairs)) if pairs else None


def word_tags(text: str, spans: Sequence[Span]) -> list[str]:
    """Each model word's entity type, or O, under these spans."""
    return [next((s.label for s in spans if s.start < e and s.end > st), OUTSIDE) for st, e in words(text)]


def word_alpha(items: Sequence[tuple[str, Mapping[str, Sequence[Span]]]]) -> float | None:
    """Krippendorff's alpha (nominal) on word-level entity types over items labelled by several annotators.

    items: (text, {annotator: spans}). Units are words; an annotator who did not label an item is missing there.
    None where nothing was labelled twice or every word has the same value (alpha is undefined).
    """
    annotators = sorted({a for _, answers in items for a in answers})
    if len(annotators) < 2:
        return None
    values: dict[str, int] = {}
    columns: list[list[float]] = []
    for text, answers in items:
        if len(answers) < 2:
            continue
        tags = {a: word_tags(text, spans) for a, spans in answers.items()}
        for w in range(len(words(text))):
            columns.append([float(values.setdefault(tags[a][w], len(values))) if a in tags else np.nan
                            for a in annotators])
    if not columns or len(values) < 2:
        return None
    alpha = float(krippendorff.alpha(reliability_data=np.array(columns).T, level_of_measurement="nominal"))
    return alpha if np.isfinite(alpha) else None


@dataclass(frozen=True, slots=True)
class SpanConsensus:
    spans: tuple[Span, ...]
    resolved: bool  # False: some cluster's vote was too close; the item goes to an expert
    confidence: float  # the weakest cluster's posterior


def _clusters(answers: Mapping[str, Sequence[Span]]) -> list[list[tuple[str, Span]]]:
    """Spans of all annotators grouped by character overlap (connected components, any type)."""
    spans = sorted(((a, s) for a, ss in answers.items() for s in ss), key=lambda x: (x[1].start, x[1].end))
    clusters: list[list[tuple[str, Span]]] = []
    end = -1
    for a, s in spans:
        if clusters and s.start < end:
            clusters[-1].append((a, s))
            end = max(end, s.end)
        else:
            clusters.append([(a, s)])
            end = s.end
    return clusters


def merge_spans(
    answers: Mapping[str, Sequence[Span]],
    reliability: Mapping[str, float],
    *,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    unknown_reliability: float = DEFAULT_UNKNOWN_RELIABILITY,
) -> SpanConsensus:
    """Consensus over several annotators' spans for one item, weighting votes by reliability.

    Spans are grouped by overlap; in each group every annotator votes for the exact span they marked there, or
    for "no entity here" if they marked none, and qc's one-coin weighted vote (consensus.decide) picks the
    winner. An annotator who marked two spans in one group votes for their first. Resolved when every group's
    winner reaches min_confidence.
    """
    if not answers:
        raise ValueError("merge_spans needs at least one annotator's answer")
    kept: list[Span] = []
    weakest, resolved = 1.0, True
    for cluster in _clusters(answers):
        first: dict[str, Span] = {}
        for a, s in cluster:
            first.setdefault(a, s)
        votes = [(a, "%d:%d:%s" % key(first[a]) if a in first else NONE) for a in sorted(answers)]
        result = decide(votes, reliability, min_confidence=min_confidence, unknown_reliability=unknown_reliability)
        weakest = min(weakest, result.confidence)
        resolved = resolved and result.resolved
        if result.label != NONE:
            kept.append(next(s for s in first.values() if "%d:%d:%s" % key(s) == result.label))
    return SpanConsensus(tuple(Span(start=s.start, end=s.end, label=s.label) for s in kept), resolved, weakest)


def vote_label(label: str, spans: Sequence[Span] | None) -> str:
    """What qc stores and compares as a label: a spans answer as its answer key (schemas.spans.answer_key), so
    that one item's votes, golden answer and pre-label compare as whole answers wherever labels do."""
    return label if spans is None else answer_key(spans)


def spans_of(label: str) -> tuple[Span, ...]:
    """The spans an answer key names (vote_label's inverse, confidence aside)."""
    return tuple(Span(start=s, end=e, label=t) for s, e, t in json.loads(label))


def span_consensus(votes: Sequence[tuple[str, str]], reliability: Mapping[str, float], *,
                   min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> tuple[str, float, bool]:
    """qc's consensus callable for spans items: the votes' answer keys merged by merge_spans, as an answer key."""
    answers: dict[str, Sequence[Span]] = {}
    for annotator, label in votes:
        answers[annotator] = spans_of(label)  # an annotator's latest answer, as with label votes
    merged = merge_spans(answers, reliability, min_confidence=min_confidence)
    return answer_key(merged.spans), merged.confidence, merged.resolved


@dataclass(frozen=True, slots=True)
class SpanAgreement:
    """Agreement between annotators on a spans project: span F1 between every two answers to one item, and
    Krippendorff's alpha on the words' entity types."""

    items: int
    multiply_labelled: int
    mean_f1: float | None  # over every pair of answers to an item, pooled over items; None: nothing labelled twice
    pairs: tuple[tuple[str, str, float, int], ...]  # (a, b, mean F1, items both answered)
    alpha: float | None = None  # word_alpha over the multiply-labelled items whose text is known; None: undefined
    alpha_items: int = 0  # the items alpha is over


def span_agreement(records: Sequence[tuple[str, str, str]], texts: Mapping[str, str] | None = None) -> SpanAgreement:
    """Pairwise span F1 from (item, annotator, answer key) records in the order they happened (latest answer of
    an annotator to an item counts, as for label agreement), and word_alpha over the items in `texts` (item ->
    its text: the words are the units, which the answer keys alone do not give)."""
    table: dict[str, dict[str, tuple[Span, ...]]] = {}
    for item, annotator, label in records:
        table.setdefault(item, {})[annotator] = spans_of(label)
    scores: list[float] = []
    by_pair: dict[tuple[str, str], list[float]] = {}
    for answers in table.values():
        for a, b in combinations(sorted(answers), 2):
            f1 = span_f1(answers[a], answers[b]).f1
            scores.append(f1)
            by_pair.setdefault((a, b), []).append(f1)
    pairs = tuple((a, b, float(np.mean(v)), len(v)) for (a, b), v in sorted(by_pair.items()))
    texts = texts or {}
    worded = [(texts[item], answers) for item, answers in table.items() if len(answers) >= 2 and item in texts]
    return SpanAgreement(len(table), sum(1 for answers in table.values() if len(answers) >= 2),
                         float(np.mean(scores)) if scores else None, pairs, word_alpha(worded), len(worded))


def golden_score(answer: Sequence[Span], gold: Sequence[Span]) -> float:
    """An annotator's score on a golden span item: its span F1 (1.0 for a correctly empty answer)."""
    return span_f1(answer, gold).f1
