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

from labelmesh.runtime.mongo import insert_new
from schemas.events import Envelope, utcnow

# The event ids of the batch being handled that a killed process was handling before (see module doc).
recovering: ContextVar[frozenset[str]] = ContextVar("recovering", default=frozenset())


class Inbox:
    """Both records are written with one insert command per batch, whose duplicate-key answers say which ids
    were there already. That is the only batched existence check FerretDB 1.24 does cheaply: an `$in` on
    `_id` decodes every document of the collection, and one lookup per event in five services held a
    3,000-item burst to 16 items/s (those lookups were scans then, see deploy/local/ferretdb.sh; even
    through the index they are a round trip per event).
    """

    def __init__(self, db: AsyncDatabase) -> None:
        self.collection = db["processed_events"]
        self.inflight = db["inflight_events"]

    async def begin(self, events: Sequence[Envelope]) -> tuple[list[Envelope], frozenset[str]]:
        """Record the batch as in flight and claim its events.

        Returns the events to handle (each id once; those claimed and finished before are left out) and the
        ids an earlier, interrupted attempt had started. The in-flight record is written first: a process
        killed between the two inserts leaves ids in flight and unclaimed, which are then handled again as
        recovering, never skipped.
        """
        first: dict[str, Envelope] = {}
        for event in events:
            first.setdefault(event.event_id, event)
        unique = list(first.values())
        if not unique:
            return [], frozenset()
        now = utcnow()
        ids = [e.event_id for e in unique]
        started = {ids[i] for i in await insert_new(self.inflight, [{"_id": i, "at": now} for i in ids])}
        claimed = {ids[i] for i in await insert_new(
            self.collection, [{"_id": e.event_id, "type": e.type, "at": now} for e in unique])}
        todo = [e for e in unique if e.event_id not in claimed or e.event_id in started]
        finished = [i for i in ids if i in claimed and i not in started]
        if finished:  # redeliveries only: not in flight, or a crash now would have them handled again
            await self.inflight.delete_many({"_id": {"$in": finished}})
        return todo, frozenset(started)

    async def release(self, events: Sequence[Envelope]) -> None:
        """Unclaim events the handler did not apply (dead-lettered), so they are accepted again when re-driven."""
        for event in events:  # rare; point deletes, since an `$in` reads the whole collection (see above)
            await self.collection.delete_one({"_id": event.event_id})

    async def end(self, events: Sequence[Envelope]) -> None:
        """The batch is handled (or released): it is no longer in flight. The in-flight collection holds only
        the batches being handled, so an `$in` over it stays small."""
        if events:
            await self.inflight.delete_many({"_id": {"$in": list({e.event_id for e in events})}})

    async def handled(self, event_id: str) -> bool:
        """Whether this event was claimed and its batch finished (for tests and tools that wait on a service)."""
        return (await self.collection.find_one({"_id": event_id}, {"_id": 1}) is not None
                and await self.inflight.find_one({"_id": event_id}, {"_id": 1}) is None)
