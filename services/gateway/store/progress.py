"""Each item's progress and final label, and per-project counters, kept by the gateway from its item-keyed events.

One document per item in `item_progress` (`_id` = project/item_id), written only by this handler, whose
consumer group reads every topic below on the same item key: one writer per document. Counters in
`project_counters` change only by `$inc`, and only when an item document changes state (first ingested,
first routed, a new annotator's label, first final), so a redelivered event counts nothing twice. A crash
between the two writes leaves a counter one short: counters are progress figures, not ledgers.

The export order: an item's first final label takes the project's next sequence number, and
`final_order` maps `project/<seq>` to the item, so an export pages by `_id $in` (the only lookup FerretDB
answers through its index) and resumes from a number.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.mongo import find_by_ids, upsert_many
from schemas.events import Envelope, ItemIngested, ItemRouted, LabelFinalized, LabelSubmitted
from schemas.keys import item_key
from services.gateway.domain.progress import apply_event

TOPICS = (ItemIngested.TOPIC, ItemRouted.TOPIC, LabelSubmitted.TOPIC, LabelFinalized.TOPIC)
PROGRESS, COUNTERS, ORDER = "item_progress", "project_counters", "final_order"


def order_key(project: str, seq: int) -> str:
    return f"{project}/{seq:012d}"


class Progress:
    """The handler for TOPICS and the queries the read API makes of what it stores."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.items = db[PROGRESS]
        self.counters = db[COUNTERS]
        self.order = db[ORDER]

    async def on_events(self, events: list[Envelope]) -> None:
        keys = list(dict.fromkeys(item_key(e.project, e.item_id) for e in events if e.item_id))
        docs = {d["_id"]: d for d in await find_by_ids(self.items, keys)}
        changed: dict[str, dict[str, Any]] = {}
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        newly_final: dict[str, list[str]] = defaultdict(list)
        final_times: dict[str, list[Any]] = defaultdict(list)
        for event in events:
            if not event.item_id:
                continue
            key = item_key(event.project, event.item_id)
            doc = docs.setdefault(key, {"_id": key, "project": event.project, "item_id": event.item_id})
            was_final = "final" in doc
            if apply_event(doc, event, counts[event.project]):
                changed[key] = doc
                if not was_final and "final" in doc and "seq" not in doc:
                    newly_final[event.project].append(key)
                    final_times[event.project].append(event.occurred_at)
        for project, keys_ in newly_final.items():
            # One $inc reserves the batch's numbers; an unused number (a crash before the write) is a gap.
            top = (await self.counters.find_one_and_update(
                {"_id": project}, {"$inc": {"seq": len(keys_)}}, upsert=True,
                return_document=ReturnDocument.AFTER))["seq"]
            first = top - len(keys_) + 1
            await upsert_many(self.order, [{"_id": order_key(project, first + n), "key": key}
                                           for n, key in enumerate(keys_)])
            for n, key in enumerate(keys_):
                changed[key]["seq"] = first + n
        await upsert_many(self.items, list(changed.values()))
        for project, by_name in counts.items():
            inc = {name: n for name, n in by_name.items() if n}
            update: dict[str, Any] = {"$inc": inc}
            if project in final_times:  # for the rate behind the CLI's ETA
                update["$min"] = {"first_final": min(final_times[project])}
                update["$max"] = {"last_final": max(final_times[project])}
            if inc:
                await self.counters.update_one({"_id": project}, update, upsert=True)

    async def counters_of(self, project: str) -> dict[str, Any]:
        return await self.counters.find_one({"_id": project}) or {}

    async def item(self, project: str, item_id: str) -> dict[str, Any] | None:
        return await self.items.find_one({"_id": item_key(project, item_id)})

    async def finals_after(self, project: str, after: int, limit: int) -> tuple[list[tuple[int, dict[str, Any]]], int]:
        """Up to `limit` sequence numbers after `after`: (seq, item progress doc) for those in use, and the
        last number looked at (the cursor to go on from; it passes gaps)."""
        top = (await self.counters_of(project)).get("seq", 0)
        last = min(top, after + limit)
        if last <= after:
            return [], after
        ids = [order_key(project, seq) for seq in range(after + 1, last + 1)]
        order = {d["_id"]: d["key"] for d in await find_by_ids(self.order, ids)}
        docs = {d["_id"]: d for d in await find_by_ids(self.items, list(order.values()))}
        rows = []
        for seq in range(after + 1, last + 1):
            doc = docs.get(order.get(order_key(project, seq), ""))
            if doc is not None and doc.get("seq") == seq:  # a number reserved twice by a redelivery counts once
                rows.append((seq, doc))
        return rows, last
