"""Events the prelabeler's tests feed it: ingested items and models trained on the fast stub encoder."""

from __future__ import annotations

import base64

from labelmesh.ml.encoder import load_encoder
from labelmesh.ml.head import sha256_hex, train_head
from labelmesh.ml.spans import SpanExample, SpanTagger, word_features
from schemas.events import ArtifactRef, ItemIngested, ModelUpdated, TextPayload, Thresholds
from schemas.spans import Span

LABELS = ("greeting", "complaint")


def item_event(item_id: str, text: str, project: str = "pl") -> ItemIngested:
    return ItemIngested(producer="test", project=project, item_id=item_id, payload=TextPayload(text=text))


def model_event(version: int, tamper: bool = False) -> ModelUpdated:
    encoder = load_encoder("hashing")
    texts = ["hello there", "good morning", "hi friend", "this is broken", "terrible service", "I want a refund"]
    head = train_head(encoder.encode(texts), ["greeting"] * 3 + ["complaint"] * 3, encoder_name=encoder.name,
                      classes=LABELS, cv_folds=3)
    content = head.to_bytes()
    digest = sha256_hex(content)
    if tamper:
        content = content + b"tampered"
    return ModelUpdated(
        producer="test", project="pl", model_version=version, encoder=encoder.name,
        artifact=ArtifactRef(uri="test://", sha256=digest, size=len(content),
                             content_b64=base64.b64encode(content).decode()),
        training_set_version="t", training_set_size=6, recommended_thresholds=Thresholds(),
    )


SPAN_TYPES = ("person", "location")
NAMES, PLACES = ("Ana", "Bo", "Cyd", "Dee", "Eli"), ("Lima", "Oslo", "Rome", "Kyiv")


def span_examples(n_items: int = 60) -> list[SpanExample]:
    """Tiny in-test sentences: '<name> flew to <place> today' (a person and a location), every third one none."""
    out = []
    for n in range(n_items):
        who, where = NAMES[n % len(NAMES)], PLACES[n % len(PLACES)]
        if n % 3 == 0:
            out.append(SpanExample("nothing happened here today", ()))
            continue
        text = f"{who} flew to {where} today"
        at = text.index(where)
        out.append(SpanExample(text, (Span(start=0, end=len(who), label="person"),
                                      Span(start=at, end=at + len(where), label="location"))))
    return out


def span_model_event(version: int, project: str = "ner") -> ModelUpdated:
    """A span tagger trained on span_examples over the hashing stub's word features."""
    encoder = load_encoder("hashing")
    examples = span_examples()
    features = word_features(encoder.name)
    tagger = SpanTagger(SPAN_TYPES, features=features.name).fit(features([e.text for e in examples]), examples)
    content = tagger.to_bytes()
    return ModelUpdated(
        producer="test", project=project, model_version=version, encoder=encoder.name,
        artifact=ArtifactRef(uri="test://", sha256=sha256_hex(content), size=len(content),
                             content_b64=base64.b64encode(content).decode()),
        training_set_version="t", training_set_size=len(examples), recommended_thresholds=Thresholds(),
    )
