"""How many leases each annotator has had (`served`, `_id` = annotator id): the golden schedule's task number."""

from __future__ import annotations

from collections.abc import Sequence

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.mongo import bulk_write, find_by_ids, upsert_by_id
from services.gateway.coalesce import Coalescer


class ServedCounter:
    def __init__(self, db: AsyncDatabase) -> None:
        self.served = db["served"]
        self.leases = db["leases"]
        self._counts: Coalescer[tuple[str, int | None], None] = Coalescer(self._count)

    async def of(self, annotator_id: str) -> int:
        """How many leases the annotator has had, from their counter document (one lookup by _id).

        Until their first lease creates it, the annotator's leases are counted (none, but for leases stored
        before the counter existed).
        """
        doc = await self.served.find_one({"_id": annotator_id})
        if doc is not None:
            return doc["n"]
        return await self.leases.count_documents({"annotator": annotator_id})

    async def count(self, annotator_id: str, before: int | None) -> None:
        """One more lease: $inc, not a value computed here, so two replicas leasing to one annotator both count.
        `before` is `of` as read before this lease, None when it was not read. Coalesced with the other leases
        handed out meanwhile (services/gateway/coalesce.py)."""
        await self._counts((annotator_id, before))

    async def _count(self, batch: Sequence[tuple[str, int | None]]) -> list[None]:
        counted = {d["_id"] for d in await find_by_ids(self.served, [a for a, _ in batch], {"_id": 1})}
        await bulk_write(self.served, [UpdateOne({"_id": a}, {"$inc": {"n": 1}}) for a, _ in batch if a in counted],
                         ordered=False)
        for annotator_id, before in batch:  # an annotator's first lease since the counter existed
            if annotator_id in counted:
                continue
            if (await self.served.update_one({"_id": annotator_id}, {"$inc": {"n": 1}})).matched_count == 0:
                if before is None:  # the leases stored, this one among them, minus this one
                    before = await self.leases.count_documents({"annotator": annotator_id}) - 1
                await upsert_by_id(self.served, annotator_id, {"$setOnInsert": {"n": before + 1}})
        return [None] * len(batch)
