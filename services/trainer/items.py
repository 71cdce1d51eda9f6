"""The trainer's copy of each item's text (from item.ingested), so exports need no other service's database."""

from __future__ import annotations

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.bus import EventBus
from labelmesh.runtime.mongo import bulk_write
from schemas.events import Envelope, ItemIngested


class ItemTexts:
    """Text, source and dataset per item; the golden answer is deliberately not kept (qc owns it)."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.collection = db["items"]

    def attach(self, bus: EventBus) -> None:
        # A consumer group of its own, so a slow retrain in the main handler never holds texts back.
        bus.subscribe([ItemIngested.TOPIC], self.handle, max_records=1000, name=f"{bus.service}.items")

    async def handle(self, events: list[Envelope]) -> None:
        # One write per item (the latest event wins): FerretDB 1.24 stalls on a bulk write touching a document twice.
        latest: dict[str, ItemIngested] = {}
        for event in events:
            assert isinstance(event, ItemIngested)
            latest[f"{event.project}/{event.item_id}"] = event
        ops = [UpdateOne({"_id": key}, {"$set": {"project": e.project, "item_id": e.item_id, "text": e.payload.text,
                                                 "source": e.source, "dataset": e.dataset}}, upsert=True)
               for key, e in latest.items()]
        await bulk_write(self.collection, ops, ordered=False)
