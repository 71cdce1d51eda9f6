"""Pre-labels: the model's calibrated top-k for each embedded item, as item.prelabeled events.

Cold start (the items embedded before their project had a model): a model-less pre-label of an item people will
label keeps its embedding (`cold_fields`), and when a model is recorded every such open item of its project gets
that model's pre-label (`reprelabels`), so the router routes it again. The ids derive from the item's first
pre-label and the model version, so a redelivered model.updated publishes the same events and every consumer
drops the copies by id. How the documents move in and out of that set is in services/prelabeler/store.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from schemas.events import (
    FlagKind,
    FlagSubject,
    ItemIngested,
    ItemPrelabeled,
    LabelScore,
    ModelUpdated,
    QcFlagged,
    derived_id,
)
from labelmesh.ml.spans import SpanPrediction
from schemas.spans import SPANS_LABEL, Span
from labelmesh.ml.artifact import ActiveModel


def scores(ranked: Sequence[tuple[str, float]]) -> tuple[LabelScore, ...]:
    """A head's ranked (label, probability) pairs as event scores, probabilities clipped into [0, 1]."""
    return tuple(LabelScore(label=label, probability=min(1.0, max(0.0, float(p)))) for label, p in ranked)


def rounded(vectors: np.ndarray) -> list[list[float]]:
    """Six decimals keep the events small; rounded in one numpy call (per-float round() was 54 ms per 256)."""
    return np.round(np.asarray(vectors).astype(np.float64), 6).tolist()


def span_scores(prediction: SpanPrediction) -> tuple[LabelScore, ...]:
    """A spans item's top-k: the placeholder label with the item's calibrated confidence (every span exactly right
    and none missed), so the router's tiers and learned thresholds read it as they read a class's probability."""
    return (LabelScore(label=SPANS_LABEL, probability=min(1.0, max(0.0, prediction.confidence))),)


def prelabels(items: Sequence[ItemIngested], cut: Sequence[bool], vectors: np.ndarray,
              models: Mapping[str, ActiveModel | None], top_k: int, producer: str,
              encoder: str, tagged: Mapping[int, SpanPrediction] | None = None) -> list[ItemPrelabeled]:
    """Each item's pre-label by its project's model (none yet: no scores, model_version None); `cut` says
    whether its text was truncated before or by the encoder; `tagged`: a span tagger's predictions by row (the
    items of spans projects with a model), which carry spans and the item confidence instead of class scores."""
    tagged = tagged or {}
    by_project: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_project.setdefault(item.project, []).append(i)
    top: dict[int, tuple[LabelScore, ...]] = {}
    versions: dict[int, int | None] = {}
    for project, rows in by_project.items():
        model = models[project]
        if model is not None and model.tagger is not None:
            for row in rows:
                top[row] = span_scores(tagged[row])
                versions[row] = model.version
            continue
        ranked = model.head.top_k(vectors[rows], top_k) if model and model.head else [[] for _ in rows]
        for row, labels in zip(rows, ranked, strict=True):
            top[row] = scores(labels)
            versions[row] = model.version if model else None
    embeddings = rounded(vectors)
    return [
        ItemPrelabeled(
            producer=producer, project=item.project, item_id=item.item_id,
            event_id=derived_id(item.event_id, "prelabeled"), correlation_id=item.correlation_id or item.event_id,
            model_version=versions[i], encoder=encoder, top_k=top[i], embedding=tuple(embeddings[i]),
            truncated=cut[i], trusted=item.trusted_label is not None,
            golden=item.golden_label is not None or item.golden_spans is not None,
            spans=tagged[i].spans if i in tagged else None,
        )
        for i, item in enumerate(items)
    ]


def needs_model(event: ItemPrelabeled) -> bool:
    """A model-less pre-label of an item people will label: not trusted (qc finalises those from the import),
    not golden (its answer is known; the router pools it whatever the model says)."""
    return event.model_version is None and not event.trusted and not event.golden


def cold_fields(event: ItemPrelabeled, vector: np.ndarray, text: str | None = None) -> dict[str, Any]:
    """What a model-less pre-label keeps so that a later model can pre-label it: the embedding for a
    classification head; for a span tagger, which reads words, also the text (`text`: a spans item's)."""
    return {"project": event.project, "item_id": event.item_id, "cold": True, "encoder": event.encoder,
            "embedding": np.asarray(vector, dtype=np.float32).tobytes(), "correlation_id": event.correlation_id,
            "truncated": event.truncated, **({"text": text} if text is not None else {})}


def reprelabels(docs: Sequence[Mapping[str, Any]], model: ActiveModel, top_k: int,
                producer: str) -> list[ItemPrelabeled]:
    """The model's pre-label for each stored cold embedding; ids derived from the first pre-label and the version.
    A classification head's (a span tagger's: span_reprelabels)."""
    assert model.head is not None
    vectors = np.stack([np.frombuffer(d["embedding"], dtype=np.float32) for d in docs])
    ranked = model.head.top_k(vectors, top_k)
    return [_cold_prelabel(d, model, producer, scores(labels), vector)
            for d, labels, vector in zip(docs, ranked, rounded(vectors), strict=True)]


def span_reprelabels(docs: Sequence[Mapping[str, Any]], model: ActiveModel, predictions: Sequence[SpanPrediction],
                     producer: str) -> list[ItemPrelabeled]:
    """A span tagger's pre-label for each stored cold spans item (`predictions`: the tagger's, on the stored
    texts, in the order of `docs`), with spans and the item confidence; ids as reprelabels makes them."""
    assert model.tagger is not None
    vectors = rounded(np.stack([np.frombuffer(d["embedding"], dtype=np.float32) for d in docs]))
    return [_cold_prelabel(d, model, producer, span_scores(p), vector, p.spans)
            for d, p, vector in zip(docs, predictions, vectors, strict=True)]


def _cold_prelabel(doc: Mapping[str, Any], model: ActiveModel, producer: str, top: tuple[LabelScore, ...],
                   vector: Sequence[float], spans: tuple[Span, ...] | None = None) -> ItemPrelabeled:
    """A cold item's pre-label by `model`, its id derived from the item's first pre-label and the version, so a
    redelivered model.updated publishes the same events."""
    return ItemPrelabeled(
        producer=producer, project=doc["project"], item_id=doc["item_id"],
        event_id=derived_id(doc["event_id"], f"cold-start-v{model.version}"),
        correlation_id=doc.get("correlation_id"), model_version=model.version, encoder=doc["encoder"],
        top_k=top, embedding=tuple(vector), truncated=bool(doc.get("truncated", False)), spans=spans,
    )


def rejection(event: ModelUpdated, reason: str, producer: str) -> QcFlagged:
    """The flag for a model.updated whose artifact must not be served (the old model stays)."""
    return QcFlagged(
        producer=producer,
        project=event.project,
        subject=FlagSubject.MODEL,
        subject_id=str(event.model_version),
        kind=FlagKind.MODEL_REJECTED,
        message=f"model v{event.model_version} was not loaded: {reason}",
        evidence={"sha256": event.artifact.sha256, "encoder": event.encoder},
        event_id=derived_id(event.event_id, "rejected"),
        correlation_id=event.event_id,
    )
