"""Events the prelabeler's tests feed it: ingested items and models trained on the fast stub encoder."""

from __future__ import annotations

import base64

from labelmesh.ml.encoder import load_encoder
from labelmesh.ml.head import sha256_hex, train_head
from schemas.events import ArtifactRef, ItemIngested, ModelUpdated, TextPayload, Thresholds

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
