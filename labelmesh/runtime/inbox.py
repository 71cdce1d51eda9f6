"""The consumer inbox: which event ids a service has already applied, so redeliveries are no-ops.

Beside it, the in-flight list: ids of the batch a handler is working on right now. A process killed in the
middle of a batch leaves its ids there; when the batch comes again, those events are "recovering" and the
handler can republish what it may already have decided and stored, but not yet published (a handler writes
its state before it publishes, and a decision found already stored is otherwise not announced again).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar

from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.mongo import find_by_ids, insert_new
from schemas.events import Envelope, utcnow

# The event ids of the batch being handled that a killed process was handling before (see module doc).
recovering: ContextVar[frozenset[str]] = ContextVar("recovering", default=frozenset())


class Inbox:
    def __init__(self, db: AsyncDatabase) -> None:
        self.collection = db["processed_events"]
        self.inflight = db["inflight_events"]

    async def filter_new(self, events: Sequence[Envelope]) -> list[Envelope]:
        if not events:
            return []
        ids = list({e.event_id for e in events})
        seen = {doc["_id"] for doc in await find_by_ids(self.collection, ids, {"_id": 1})}
        fresh, taken = [], set()
        for event in events:
            if event.event_id in seen or event.event_id in taken:
                continue
            taken.add(event.event_id)
            fresh.append(event)
        return fresh

    async def begin(self, events: Sequence[Envelope]) -> frozenset[str]:
        """Record the batch as in flight; returns the ids an earlier, interrupted run had already started."""
        if not events:
            return frozenset()
        ids = list({e.event_id for e in events})
        # One insert command: the ids it finds already there are the ones an earlier attempt started.
        existing = await insert_new(self.inflight, [{"_id": i, "at": utcnow()} for i in ids])
        return frozenset(ids[i] for i in existing)

    async def mark(self, events: Sequence[Envelope]) -> None:
        if not events:
            return
        now = utcnow()
        # One insert command per batch; an id already marked (a redelivery) keeps its first entry.
        docs = {e.event_id: {"_id": e.event_id, "type": e.type, "at": now} for e in events}
        await insert_new(self.collection, list(docs.values()))

    async def end(self, events: Sequence[Envelope]) -> None:
        """The batch is handled and marked: it is no longer in flight."""
        if events:
            await self.inflight.delete_many({"_id": {"$in": list({e.event_id for e in events})}})
