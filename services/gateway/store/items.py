"""Ingested items (`items`, `_id` = item_key): text, golden or trusted answer, provenance and metadata."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.mongo import find_by_ids, insert_new
from schemas.events import ItemIngested
from schemas.keys import item_key
from services.gateway.domain.ingest import content_digest, event_digest

CONTENT = {"text": 1, "golden_label": 1, "trusted_label": 1, "golden_spans": 1}


def item_doc(event: ItemIngested, metadata: Mapping[str, str]) -> dict[str, Any]:
    return {"_id": item_key(event.project, event.item_id), "project": event.project, "item_id": event.item_id,
            "text": event.payload.text, "golden_label": event.golden_label, "trusted_label": event.trusted_label,
            "content_sha256": event_digest(event), "source": event.source, "dataset": event.dataset,
            "ingested_at": event.occurred_at, "metadata": dict(metadata),
            **({"golden_spans": [s.model_dump() for s in event.golden_spans]} if event.golden_spans else {})}


def _digest(doc: Mapping[str, Any]) -> str:
    return content_digest(doc["text"], doc.get("golden_label"), doc.get("trusted_label"), doc.get("golden_spans"))


def golden_doc(doc: Mapping[str, Any]) -> bool:
    """Whether a stored item is golden (a golden label, or a spans project's golden spans)."""
    return bool(doc.get("golden_label") or doc.get("golden_spans"))


class ItemStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.items = db["items"]

    async def digests(self, events: Sequence[ItemIngested]) -> dict[str, str]:
        """The content digest of each of these items already stored, by item key."""
        stored = await find_by_ids(self.items, [item_key(e.project, e.item_id) for e in events], CONTENT)
        return {d["_id"]: _digest(d) for d in stored}

    async def insert_new(self, docs: Sequence[dict[str, Any]]) -> list[int]:
        """Insert these documents in bulk (unique ids); the positions of those already there, which stay."""
        return await insert_new(self.items, list(docs))

    async def stored_as(self, event: ItemIngested) -> bool:
        """Whether the item is stored with this event's content."""
        doc = await self.items.find_one({"_id": item_key(event.project, event.item_id)}, CONTENT)
        return doc is not None and _digest(doc) == event_digest(event)

    async def get(self, project: str, item_id: str) -> dict[str, Any] | None:
        return await self.items.find_one({"_id": item_key(project, item_id)})

    async def golden_of(self, project: str, item_ids: Sequence[str]) -> dict[str, bool]:
        """Whether each of these items that is stored is golden, by item id."""
        found = await find_by_ids(self.items, [item_key(project, i) for i in item_ids],
                                  {"item_id": 1, "golden_label": 1, "golden_spans": 1})
        return {d["item_id"]: golden_doc(d) for d in found}

    async def ordinary_ids(self, project: str) -> list[str]:
        """The ids of the project's items that are not golden."""
        return [d["item_id"] async for d in self.items.find(
            {"project": project}, {"item_id": 1, "golden_label": 1, "golden_spans": 1}) if not golden_doc(d)]

    async def by_keys(self, keys: Sequence[str], projection: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        return {d["_id"]: d for d in await find_by_ids(self.items, keys, projection)}
