"""The trainer's copy of each item's text (from item.ingested), so exports need no other service's database."""

from __future__ import annotations

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.bus import EventBus
from schemas.events import Envelope, ItemIngested


class ItemTexts:
    """Text, source and dataset per item; the golden answer is deliberately not kept (qc owns it)."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.collection = db["items"]

    def attach(self, bus: EventBus) -> None:
        # A consumer group of its own, so a slow retrain in the main handler never holds texts back.
        bus.subscribe([ItemIngested.TOPIC], self.handle, max_records=1000, name=f"{bus.service}.items")

    async def handle(self, events: list[Envelope]) -> None:
        ops = []
        for event in events:
            assert isinstance(event, ItemIngested)
            ops.append(UpdateOne(
                {"_id": f"{event.project}/{event.item_id}"},
                {"$set": {"project": event.project, "item_id": event.item_id, "text": event.payload.text,
                          "source": event.source, "dataset": event.dataset}},
                upsert=True,
            ))
        if ops:
            await self.collection.bulk_write(ops, ordered=False)
