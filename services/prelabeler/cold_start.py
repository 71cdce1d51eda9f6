"""Cold start: items pre-labelled before their project had a model are pre-labelled again, and so re-routed,
when its first model (or any later one, while some are still waiting) arrives. Open items only: an item with a
final label keeps it.

The `prelabels` document of an item embedded without a model keeps its embedding and `cold: true`; a
label.finalized marks it `final: true` (the prelabeler's `finals` group). When a model is recorded, every cold,
not-final document of its project (same encoder) gets the model's calibrated top-k in an item.prelabeled whose
id is derived from the item's first pre-label and the model version, so a redelivered model.updated publishes
the same events and every consumer drops the copies by id. The router routes it as any pre-label (a re-route:
the gateway supersedes the item's model-less task). Published first, then the document leaves the cold set
with one conditional update (`cold: true` in the filter), so a crash in between only repeats events.

Writers: the item's owner (item.ingested) writes the document, the finals group sets `final`, the models group
clears `cold`; each is one update by `_id` of its own fields, so none undoes another's. Not closed: an item
finalised while its re-pre-label is already on its way (between the sweep's read and the router's routing) is
routed once more, and an item embedded by a replica that had not yet heard of the model, after the sweep read
its project, waits for the project's next model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from labelmesh.runtime.mongo import bulk_write, upsert_by_id
from schemas.events import ItemPrelabeled, LabelFinalized, LabelScore, derived_id
from services.prelabeler.models import ActiveModel

SWEEP_CHUNK = 256


def cold_fields(event: ItemPrelabeled, vector: np.ndarray) -> dict[str, Any]:
    """What a model-less pre-label keeps so that a later model can pre-label it without the text."""
    return {"project": event.project, "item_id": event.item_id, "cold": True, "encoder": event.encoder,
            "embedding": np.asarray(vector, dtype=np.float32).tobytes(), "correlation_id": event.correlation_id,
            "truncated": event.truncated}


def needs_model(event: ItemPrelabeled) -> bool:
    """A model-less pre-label of an item people will label: not trusted (qc finalises those from the import),
    not golden (its answer is known; the router pools it whatever the model says)."""
    return event.model_version is None and not event.trusted and not event.golden


async def mark_final(prelabels: AsyncCollection, events: Sequence[LabelFinalized]) -> None:
    """An item with a final label never leaves the state it is in for a new model (upsert: the final may arrive
    before the item's pre-label is stored, and the later merge keeps the flag; upsert_by_id survives the insert
    race with the item's owner)."""
    for event in events:
        await upsert_by_id(prelabels, f"{event.project}/{event.item_id}", {"$set": {"final": True}})


async def waiting(prelabels: AsyncCollection, project: str, encoder: str) -> list[dict[str, Any]]:
    """Up to SWEEP_CHUNK of the project's open model-less pre-labels (a fresh query each time: the caller takes
    each chunk out of the set before asking again)."""
    return await prelabels.find(
        {"project": project, "cold": True, "encoder": encoder, "final": {"$ne": True}}).to_list(SWEEP_CHUNK)


def reprelabel(docs: Sequence[dict[str, Any]], model: ActiveModel, top_k: int, producer: str) -> list[ItemPrelabeled]:
    """The model's pre-label for each stored embedding; ids derived from the first pre-label and the version."""
    vectors = np.stack([np.frombuffer(d["embedding"], dtype=np.float32) for d in docs])
    ranked = model.head.top_k(vectors, top_k)
    rounded = np.round(vectors.astype(np.float64), 6).tolist()
    return [
        ItemPrelabeled(
            producer=producer, project=d["project"], item_id=d["item_id"],
            event_id=derived_id(d["event_id"], f"cold-start-v{model.version}"),
            correlation_id=d.get("correlation_id"), model_version=model.version, encoder=d["encoder"],
            top_k=tuple(LabelScore(label=l, probability=min(1.0, max(0.0, float(p)))) for l, p in labels),
            embedding=tuple(vector), truncated=bool(d.get("truncated", False)),
        )
        for d, labels, vector in zip(docs, ranked, rounded, strict=True)
    ]


async def leave_cold(prelabels: AsyncCollection, events: Sequence[ItemPrelabeled]) -> None:
    """The document now holds the model's pre-label (by `_id` alone: FerretDB scans for any other filter)."""
    await bulk_write(prelabels, [
        UpdateOne({"_id": f"{e.project}/{e.item_id}"},
                  {"$set": {"model_version": e.model_version, "top_k": [s.model_dump() for s in e.top_k],
                            "event_id": e.event_id},
                   "$unset": {"cold": "", "embedding": ""}})
        for e in events], ordered=False)
