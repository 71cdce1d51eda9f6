"""A model artifact as announced in model.updated: verified (checksum, encoder), then deserialised into the
head or span tagger it holds. The prelabeler serves it; the router re-scores queued items with it."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from labelmesh.ml.head import TrainedHead
from labelmesh.ml.spans import SpanTagger, features_name
from schemas.events import ModelUpdated


class ModelRejected(Exception):
    """A model.updated whose artifact must not be served; the old model stays."""


@dataclass(frozen=True)
class ActiveModel:
    """A project's model: a classification head, or (spans projects) a span tagger in `tagger`."""

    version: int
    head: TrainedHead | None
    tagger: SpanTagger | None = None


def load_artifact(event: ModelUpdated, encoder_name: str) -> ActiveModel:
    """Check the artifact's checksum and encoder, then deserialise it."""
    try:
        content = base64.b64decode(event.artifact.content_b64, validate=True)
    except ValueError as exc:
        raise ModelRejected(f"artifact is not base64: {exc}") from exc
    digest = hashlib.sha256(content).hexdigest()
    if digest != event.artifact.sha256:
        raise ModelRejected(f"checksum mismatch: artifact {digest} != announced {event.artifact.sha256}")
    if event.encoder != encoder_name:
        raise ModelRejected(f"model was trained on encoder {event.encoder!r}, this prelabeler runs {encoder_name!r}")
    try:
        if SpanTagger.is_artifact(content):
            tagger = SpanTagger.from_bytes(content)
            if tagger.features != features_name(encoder_name):
                raise ValueError(f"span tagger on {tagger.features!r} word features; this prelabeler computes "
                                 f"{features_name(encoder_name)!r}")
            return ActiveModel(event.model_version, None, tagger)
        head = TrainedHead.from_bytes(content)
    except Exception as exc:  # noqa: BLE001 - any load failure rejects the model
        raise ModelRejected(f"artifact does not load: {exc!r}") from exc
    return ActiveModel(event.model_version, head)
