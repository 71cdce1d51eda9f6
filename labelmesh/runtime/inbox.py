"""The consumer inbox: which event ids a service has already applied, so redeliveries are no-ops."""

from __future__ import annotations

from collections.abc import Sequence

from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.mongo import insert_new
from schemas.events import Envelope, utcnow


class Inbox:
    def __init__(self, db: AsyncDatabase) -> None:
        self.collection = db["processed_events"]

    async def filter_new(self, events: Sequence[Envelope]) -> list[Envelope]:
        if not events:
            return []
        ids = list({e.event_id for e in events})
        seen = {doc["_id"] async for doc in self.collection.find({"_id": {"$in": ids}}, {"_id": 1})}
        fresh, taken = [], set()
        for event in events:
            if event.event_id in seen or event.event_id in taken:
                continue
            taken.add(event.event_id)
            fresh.append(event)
        return fresh

    async def mark(self, events: Sequence[Envelope]) -> None:
        if not events:
            return
        now = utcnow()
        # One insert command per batch; an id already marked (a redelivery) keeps its first entry.
        docs = {e.event_id: {"_id": e.event_id, "type": e.type, "at": now} for e in events}
        await insert_new(self.collection, list(docs.values()))
