"""The prelabeler's documents: each item's pre-label with the cold-start set (its model registry is
labelmesh.runtime.models.ModelRegistry, written only by the shared models group).

Writers of a `prelabels` document: the item's owner (item.ingested) writes it, the finals group sets `final`, the
models group clears `cold`; each is one update by `_id` of its own fields, so none undoes another's. Published
first, then a re-pre-labelled document leaves the cold set with one update, so a crash in between only repeats
events. Not closed: an item finalised while its re-pre-label is already on its way (between the sweep's read and
the router's routing) is routed once more, and an item embedded by a replica that had not yet heard of the model,
after the sweep read its project, waits for the project's next model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.mongo import bulk_write, upsert_by_id, upsert_many
from schemas.events import ItemPrelabeled, LabelFinalized
from schemas.keys import item_key
from services.prelabeler.domain.prelabel import cold_fields, needs_model

SWEEP_CHUNK = 256  # cold documents read per sweep query


class PrelabelStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.prelabels = db["prelabels"]

    async def record(self, events: Sequence[ItemPrelabeled], vectors: np.ndarray,
                     texts: Sequence[str | None] | None = None) -> None:
        """Merged: a `final` mark stored before the pre-label stays. Model-less pre-labels keep their embedding,
        so the project's first model can pre-label them without the text; `texts` (by event, None for
        classification items) keeps a spans item's text, which its first span tagger reads."""
        await upsert_many(
            self.prelabels,
            [{"_id": item_key(e.project, e.item_id), "model_version": e.model_version,
              "top_k": [s.model_dump() for s in e.top_k], "truncated": e.truncated, "event_id": e.event_id,
              **(cold_fields(e, vectors[i], texts[i] if texts else None) if needs_model(e) else {})}
             for i, e in enumerate(events)],
            merge=True,
        )

    async def mark_final(self, events: Sequence[LabelFinalized]) -> None:
        """An item with a final label never leaves the state it is in for a new model (upsert: the final may
        arrive before the item's pre-label is stored, and the later merge keeps the flag; upsert_by_id survives
        the insert race with the item's owner)."""
        for event in events:
            await upsert_by_id(self.prelabels, item_key(event.project, event.item_id), {"$set": {"final": True}})

    async def waiting(self, project: str, encoder: str, with_text: bool = False) -> list[dict[str, Any]]:
        """Up to SWEEP_CHUNK of the project's open model-less pre-labels (a fresh query each time: the caller
        takes each chunk out of the set before asking again); with_text: only those that kept their text (a spans
        item stored before cold items kept it has nothing for a tagger to read, and stays with its people)."""
        query = {"project": project, "cold": True, "encoder": encoder, "final": {"$ne": True}}
        if with_text:
            query["text"] = {"$exists": True}
        return await self.prelabels.find(query).to_list(SWEEP_CHUNK)

    async def leave_cold(self, events: Sequence[ItemPrelabeled]) -> None:
        """The document now holds the model's pre-label (by `_id` alone: FerretDB scans for any other filter)."""
        await bulk_write(self.prelabels, [
            UpdateOne({"_id": item_key(e.project, e.item_id)},
                      {"$set": {"model_version": e.model_version, "top_k": [s.model_dump() for s in e.top_k],
                                "event_id": e.event_id},
                       "$unset": {"cold": "", "embedding": "", "text": ""}})
            for e in events], ordered=False)
