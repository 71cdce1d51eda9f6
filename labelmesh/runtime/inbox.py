"""The consumer inbox: which event ids a service has already applied, so redeliveries are no-ops.

Beside it, the in-flight list: ids of the batches a handler is working on right now. A process killed in
the middle of a batch leaves its ids there; when the batch comes again, those events are "recovering" and
the handler can republish what it may already have decided and stored, but not yet published (a handler
writes its state before it publishes, and a decision found already stored is otherwise not announced
again).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.mongo import IDS_PER_QUERY, insert_new, ttl_index
from labelmesh.runtime.settings import INBOX_RETENTION_S
from schemas.events import Envelope, utcnow

# The event ids of the batch being handled that a killed process was handling before (see module doc).
recovering: ContextVar[frozenset[str]] = ContextVar("recovering", default=frozenset())


@dataclass(frozen=True)
class Claim:
    """One batch's claim: the events to handle, those an interrupted attempt had started, and what end() clears."""

    todo: list[Envelope]
    recovering: frozenset[str]
    batch_id: str = ""
    ids: frozenset[str] = frozenset()
    # In-flight records of interrupted attempts that hold some of this batch's ids: {record _id: its ids}.
    stale: dict[str, list[str]] = field(default_factory=dict)


class Inbox:
    """Claims are written with one insert command per batch, whose duplicate-key answers say which ids were
    there already: one command answers both "is it new?" and "claim it". One lookup per event in five
    services held a 3,000-item burst to 16 items/s (those lookups were scans then, see
    deploy/local/ferretdb.sh; even through the index they are a round trip per event).

    The in-flight list is one record per batch ({_id: batch id, ids: [...]}), not one per event: a batch
    then costs the database one small insert and one delete by `_id` instead of inserting and deleting
    every event's record, which was a third of the inbox's writes in every service. The collection holds
    only the batches being handled now (and those of attempts that died), so reading all of it is cheap.
    """

    def __init__(self, db: AsyncDatabase, retention_s: float = INBOX_RETENTION_S,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.collection = db["processed_events"]
        self.inflight = db["inflight_events"]
        self.retention_s = retention_s
        self.clock = clock

    async def ensure_indexes(self) -> None:
        """The in-flight records by event id; where the server expires documents itself (MongoDB), applied ids go
        past the retention window on their own too."""
        await self.inflight.create_index("ids")
        await ttl_index(self.collection, "at", self.retention_s)

    def cutoff(self) -> datetime:
        """What was recorded before this is past the retention window."""
        return self.clock() - timedelta(seconds=self.retention_s)

    async def prune(self) -> tuple[int, int]:
        """Forget event ids applied longer ago than the retention window, and in-flight records of attempts that
        died that long ago (their events came back long since, or never will); how many of each went.

        FerretDB 1.24 has no TTL index, and without this the inbox grew by every event a service ever read."""
        cutoff = self.cutoff()
        applied = await self.collection.delete_many({"at": {"$lt": cutoff}})
        stale = await self.inflight.delete_many({"at": {"$lt": cutoff}})
        return applied.deleted_count, stale.deleted_count

    async def begin(self, events: Sequence[Envelope]) -> Claim:
        """Record the batch as in flight and claim its events.

        The claim's todo holds the events to handle (each id once; those claimed and finished before are
        left out), its recovering the ids an earlier, interrupted attempt had started. The in-flight record
        is written first: a process killed between the two inserts leaves ids in flight and unclaimed, which
        are then handled again as recovering, never skipped.
        """
        first: dict[str, Envelope] = {}
        for event in events:
            first.setdefault(event.event_id, event)
        unique = list(first.values())
        if not unique:
            return Claim([], frozenset())
        now = self.clock()
        ids = [e.event_id for e in unique]
        wanted = set(ids)
        stale: dict[str, list[str]] = {}
        # Only the records sharing an id with this batch: through the index on MongoDB; FerretDB 1.24 still reads
        # every record, which prune() keeps to the attempts of the retention window.
        for start in range(0, len(ids), IDS_PER_QUERY):
            async for doc in self.inflight.find({"ids": {"$in": ids[start:start + IDS_PER_QUERY]}}, {"ids": 1}):
                stale[doc["_id"]] = list(doc["ids"])
        started = {i for record_ids in stale.values() for i in record_ids if i in wanted}
        batch_id = uuid.uuid4().hex
        await self.inflight.insert_one({"_id": batch_id, "ids": ids, "at": now})
        claimed = {ids[i] for i in await insert_new(
            self.collection, [{"_id": e.event_id, "type": e.type, "at": now} for e in unique])}
        todo = [e for e in unique if e.event_id not in claimed or e.event_id in started]
        finished = {i for i in ids if i in claimed and i not in started}
        if finished:  # redeliveries only: not in flight, or a crash now would have them handled again
            await self.inflight.update_one({"_id": batch_id}, {"$set": {"ids": [i for i in ids if i not in finished]}})
        return Claim(todo, frozenset(started), batch_id, frozenset(wanted), stale)

    async def release(self, events: Sequence[Envelope]) -> None:
        """Unclaim events the handler did not apply (dead-lettered), so they are accepted again when re-driven."""
        ids = [e.event_id for e in events]
        for start in range(0, len(ids), IDS_PER_QUERY):
            await self.collection.delete_many({"_id": {"$in": ids[start:start + IDS_PER_QUERY]}})

    async def end(self, claim: Claim) -> None:
        """The batch is handled (or released): it is no longer in flight, nor are its ids in the records of
        the interrupted attempts it recovered (rare; each is trimmed, or deleted once empty)."""
        if not claim.batch_id:
            return
        await self.inflight.delete_one({"_id": claim.batch_id})
        for record_id, record_ids in claim.stale.items():
            left = [i for i in record_ids if i not in claim.ids]
            if left:
                await self.inflight.update_one({"_id": record_id}, {"$set": {"ids": left}})
            else:
                await self.inflight.delete_one({"_id": record_id})

    async def in_flight(self, event_id: str) -> bool:
        """Whether a batch being handled (or an interrupted attempt) holds this event."""
        return await self.inflight.find_one({"ids": event_id}, {"_id": 1}) is not None

    async def handled(self, event_id: str) -> bool:
        """Whether this event was claimed and its batch finished (for tests and tools that wait on a service)."""
        return (await self.collection.find_one({"_id": event_id}, {"_id": 1}) is not None
                and not await self.in_flight(event_id))
