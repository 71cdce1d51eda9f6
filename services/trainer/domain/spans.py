"""A spans project's training run: examples from final spans and item texts, the tagger's fit, and its evaluation
in the head's terms (an item is right only if all its spans are), so promotion and thresholds follow one rule."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from labelmesh.ml.spans import SpanExample, SpanTagger
from schemas.spans import Span, answer_key
from services.router.domain.thresholds import Observation
from services.trainer.domain.evaluation import Evaluation, judges_models

Features = Callable[[Sequence[str]], list[np.ndarray]]


def span_examples(docs: Sequence[Mapping[str, Any]], texts: Mapping[str, str]) -> list[SpanExample]:
    """The examples whose final spans and text the trainer has (an item whose text has not arrived waits)."""
    return [SpanExample(texts[d["item_id"]], tuple(Span(**s) for s in d["spans"]))
            for d in docs if d.get("spans") is not None and d["item_id"] in texts]


def eval_examples(held_out: Sequence[Mapping[str, Any]], texts: Mapping[str, str], *,
                  exclude_auto: bool) -> list[SpanExample]:
    return span_examples([d for d in held_out if judges_models(d.get("provenance"), exclude_auto=exclude_auto)],
                         texts)


def fit_tagger(examples: Sequence[SpanExample], entity_types: Sequence[str], features: Features,
               features_name: str, *, fit_threads: int) -> SpanTagger:
    with threadpool_limits(fit_threads):
        return SpanTagger(entity_types, features=features_name).fit(features([e.text for e in examples]), examples)


def evaluate_tagger(tagger: SpanTagger, examples: Sequence[SpanExample], features: Features
                    ) -> tuple[Evaluation, float]:
    """The tagger on held-out items: (exact-item accuracy with each item confidence as an observation, span F1)."""
    if not examples:
        return Evaluation(0, float("nan"), float("nan"), ()), float("nan")
    predictions = tagger.predict([e.text for e in examples], features([e.text for e in examples]))
    right = [answer_key(p.spans) == answer_key(e.spans) for p, e in zip(predictions, examples, strict=True)]
    tp = sum(len({(s.start, s.end, s.label) for s in p.spans} & {(s.start, s.end, s.label) for s in e.spans})
             for p, e in zip(predictions, examples, strict=True))
    predicted, gold = sum(len(p.spans) for p in predictions), sum(len(e.spans) for e in examples)
    precision, recall = (tp / predicted if predicted else 1.0), (tp / gold if gold else 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    observations = tuple(Observation(float(min(1.0, max(0.0, p.confidence))), ok)
                         for p, ok in zip(predictions, right, strict=True))
    confidence = np.array([o.confidence for o in observations])
    ece = float(abs(confidence.mean() - np.mean(right)))  # one bin: the items' mean confidence against accuracy
    return Evaluation(len(examples), float(np.mean(right)), ece, observations), float(f1)
