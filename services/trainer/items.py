"""The trainer's copy of each item's text (from item.ingested), so exports need no other service's database."""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.bus import EventBus
from labelmesh.runtime.mongo import upsert_many
from schemas.events import Envelope, ItemIngested
from schemas.keys import item_key


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
            latest[item_key(event.project, event.item_id)] = event
        # New items in one insert; the ones stored before (redeliveries, replays) get a $set each.
        await upsert_many(self.collection, [
            {"_id": key, "project": e.project, "item_id": e.item_id, "text": e.payload.text, "source": e.source,
             "dataset": e.dataset} for key, e in latest.items()], merge=True)
