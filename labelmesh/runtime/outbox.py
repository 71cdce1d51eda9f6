"""The producer's outbox: events written down before they are published, relayed by whichever replica claims them.

A handler that stores a decision and then publishes it loses the event if the process dies in between and
nobody asks again. So it first adds the event to the outbox (one small collection holding only what is not yet
published, read whole, never scanned out of a big one), stores its state, publishes and marks the record done.
The relay publishes every record older than `after_s` that is still there: after a restart, and periodically
while running, whether or not a client retries. Consumers drop a second copy by event id (their inbox).

Two replicas relay the same outbox, and a record must have one relay at a time. The claim is made of inserts
only, since a unique `_id` is the one write FerretDB 1.24 makes atomic across processes (a conditional update
reads and rewrites without isolation): time is cut in slots of `claim_s`, and a relay owns a record for slots s
and s+1 only if it inserted both `<id>@s` and `<id>@s+1`. Any two claims whose windows overlap share a slot id,
so one of them fails and gives up. An owner acts only before its window ends, so a relay that died (or stalls)
leaves the record to another one at most two slots later.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.mongo import IDS_PER_QUERY, find_by_ids, insert_new
from schemas.events import Envelope, parse_event, utcnow

log = logging.getLogger(__name__)

# What the relay does with a record it claimed: the event to publish, or None when it must not be published
# (the state it announces was never stored, or was replaced by a later one), and the record is dropped.
Check = Callable[[dict[str, Any]], Awaitable[Envelope | None]]
# Run after the broker has the events the relay published (e.g. mark the stored documents published).
Published = Callable[[list[dict[str, Any]]], Awaitable[None]]


def record(event: Envelope, kind: str, at: datetime | None = None, **extra: Any) -> dict[str, Any]:
    """An outbox record for `event` (one per event id: adding it twice keeps the first)."""
    return {"_id": event.event_id, "kind": kind, "event": event.model_dump_json(), "at": at or utcnow(), **extra}


class Outbox:
    def __init__(self, db: AsyncDatabase, publish: Callable[[Sequence[Envelope]], Awaitable[None]], *,
                 claim_s: float = 60.0, per_claim: int = 200, clock: Callable[[], datetime] = utcnow) -> None:
        self.records = db["outbox"]
        self.claims = db["outbox_claims"]
        self.publish = publish
        self.claim_s = claim_s
        self.per_claim = per_claim  # records checked and published under one claim (one read each, at most)
        self.clock = clock
        self.owner = uuid.uuid4().hex  # this relay, in its claims (for operators; ownership is the inserts)

    async def add(self, records: Sequence[dict[str, Any]]) -> None:
        """Write the records down before the state they announce (from `record`); existing ids stay as they were."""
        await insert_new(self.records, list(records))

    async def done(self, ids: Sequence[str]) -> None:
        """The broker has these events: their records go (claims of a relay that held them expire on their own)."""
        ids = list(ids)
        for start in range(0, len(ids), IDS_PER_QUERY):
            await self.records.delete_many({"_id": {"$in": ids[start:start + IDS_PER_QUERY]}})

    async def pending(self) -> int:
        return await self.records.count_documents({})

    async def relay(self, after_s: float, checks: dict[str, Check], published: dict[str, Published]) -> int:
        """Publish the records older than `after_s` that this relay can claim, `per_claim` at a time (each chunk
        claimed afresh, so a large outbox never outlasts a claim); returns how many it published."""
        cutoff = self.clock() - timedelta(seconds=after_s)
        total, after = 0, None
        while True:
            query: dict[str, Any] = {"at": {"$lte": cutoff}, **({"_id": {"$gt": after}} if after else {})}
            chunk = [r async for r in self.records.find(query, sort=[("_id", 1)], limit=self.per_claim)]
            if not chunk:
                return total
            after = chunk[-1]["_id"]
            total += await self._relay_chunk(chunk, checks, published)
            if len(chunk) < self.per_claim:
                return total

    async def _relay_chunk(self, stranded: list[dict[str, Any]], checks: dict[str, Check],
                           published: dict[str, Published]) -> int:
        now = self.clock()
        slot = int(now.timestamp() // self.claim_s)
        window_ends = datetime.fromtimestamp((slot + 2) * self.claim_s, now.tzinfo)
        mine = await self._claim([r["_id"] for r in stranded], slot)
        try:
            # Read again once claimed: another relay may have finished a record (and let its claim go) since the
            # list was read, and its record is gone then.
            claimed = await find_by_ids(self.records, sorted(mine)) if mine else []
            return await self._relay_claimed(claimed, window_ends, checks, published)
        finally:  # also when the publish failed: the next pass (of any relay) may claim them at once
            await self._release(mine, slot)

    async def _relay_claimed(self, claimed: list[dict[str, Any]], window_ends: datetime, checks: dict[str, Check],
                             published: dict[str, Published]) -> int:
        events: list[Envelope] = []
        kept: list[dict[str, Any]] = []
        dropped: list[str] = []
        for rec in claimed:
            check = checks.get(rec.get("kind", ""))
            event = await check(rec) if check else parse_event(rec["event"])
            if event is None:
                dropped.append(rec["_id"])
            else:
                events.append(event)
                kept.append(rec)
        if self.clock() >= window_ends:  # too slow: another relay may own these by now
            return 0
        if events:
            await self.publish(events)
            for kind, after in published.items():
                of_kind = [r for r in kept if r.get("kind") == kind]
                if of_kind:
                    await after(of_kind)
            log.warning("relayed %d event(s) stored but not published (a process died or its publish failed)",
                        len(events))
        await self.done([*dropped, *(r["_id"] for r in kept)])
        return len(events)

    async def _claim(self, ids: list[str], slot: int) -> set[str]:
        """The ids this relay now owns for slots `slot` and `slot + 1` (see the module doc)."""
        if not ids:
            return set()
        mine = set(ids)
        for s in (slot, slot + 1):
            wanted = sorted(mine)
            lost = await insert_new(self.claims, [{"_id": f"{i}@{s}", "record": i, "slot": s, "owner": self.owner}
                                                  for i in wanted])
            if lost:
                gone = {wanted[n] for n in lost}
                if s == slot + 1:  # the first slot's claim was this relay's: hand it back
                    await self.claims.delete_many({"_id": {"$in": [f"{i}@{slot}" for i in gone]}})
                mine -= gone
        return mine

    async def _release(self, ids: set[str], slot: int) -> None:
        """Drop this pass's claims, and any claim from slots long past (a relay that died with them)."""
        names = [f"{i}@{s}" for i in sorted(ids) for s in (slot, slot + 1)]
        for start in range(0, len(names), IDS_PER_QUERY):
            await self.claims.delete_many({"_id": {"$in": names[start:start + IDS_PER_QUERY]}})
        await self.claims.delete_many({"slot": {"$lt": slot - 1}})
