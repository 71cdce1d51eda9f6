"""Task queues and leases in the gateway's database: who may work on what, and for how long."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.ml.active import review_priority
from labelmesh.runtime.mongo import insert_new
from schemas.events import ItemRouted, Tier, utcnow
from services.gateway.auth import Role
from services.gateway.calibration import TIER as CALIBRATION


T = TypeVar("T")


class LeaseError(Exception):
    """A lease that cannot be used: unknown, someone else's, expired or already finished."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Lease:
    lease_id: str
    task: dict[str, Any]
    expires_at: datetime
    guideline_version: int | None = None  # what the annotator was shown when the lease began
    fresh: bool = False  # handed out by this call (not the annotator's current lease returned again)


def lease_id_for(task_id: str, annotator_id: str) -> str:
    return f"{task_id}~{annotator_id}"


class TaskQueue:
    """Tasks and leases. Every change to them runs under one lock per gateway process.

    MongoDB makes find_one_and_update atomic, but FerretDB 1.24 on SQLite reads the document, applies
    the update in Go and writes the whole document back without isolation: two annotators claiming the
    last slot both "won", and one $push overwrote the other, so an annotator who had already answered
    could claim the same task again (seen in the demo). Serialising the queue's read-modify-write steps
    in-process makes them atomic again as long as one gateway process owns the database; on a real
    MongoDB the operations are atomic by themselves and the lock only costs a little concurrency.
    """

    def __init__(self, db: AsyncDatabase, lease_seconds: float) -> None:
        self.tasks = db["tasks"]
        self.leases = db["leases"]
        self.golden_seen = db["golden_seen"]
        # The routed tasks of each item ({_id: "project/item", tasks: [...]}), so that superseding and closing
        # an item's tasks are lookups by _id: FerretDB 1.24 filters anything else by reading every task, and
        # that, once per routing decision and final label, left the gateway ever further behind as tasks grew.
        self.by_item = db["item_tasks"]
        self.lease_seconds = lease_seconds
        self._lock = asyncio.Lock()
        # Projects that may have open calibration tasks (absent: not known yet). Saves the extra query on every
        # lease of a project without a session; like the lock, it relies on one gateway process per database.
        self._calibrating: dict[str, bool] = {}

    async def _serial(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work` under the queue lock, in a task of its own.

        gRPC cancels a handler whose client gave up (a deadline, a disconnect). Cancelled while it waited
        for the lock, or while it held it, the handler could leave the lock taken with nobody to wake the
        next waiter: in the crash run the gateway's consumer waited on it for good after FerretDB restarted,
        with no task holding it. Shielded, the work always runs to its end and releases the lock itself;
        work whose caller left before its turn came is dropped, so timed-out calls do not pile up behind it.
        """
        abandoned = asyncio.Event()

        async def locked() -> T:
            async with self._lock:
                if abandoned.is_set():  # the caller is gone (its client retries): spend the lock on others
                    raise asyncio.CancelledError
                return await work()

        try:
            return await asyncio.shield(asyncio.ensure_future(locked()))
        except asyncio.CancelledError:
            abandoned.set()
            raise

    async def ensure_indexes(self) -> None:
        await self.tasks.create_index([("project", 1), ("status", 1), ("open_slots", 1)])
        await self.leases.create_index([("state", 1), ("expires_at", 1)])
        await self.leases.create_index([("annotator", 1), ("state", 1)])

    async def _add_all(self, batch: Sequence[ItemRouted]) -> None:
        """A task per routing decision that needs humans; a re-route replaces the item's open task.

        New items (nearly all of them) take one insert per collection for the whole run of decisions; an
        item that already had a task (a re-route, or a redelivery) then takes the per-item path, in order,
        once every new task exists. Per-item writes for every decision were a third of the gateway's
        database time in a 3,000-item burst.
        """
        routed = [r for r in batch if r.required_annotators > 0 or r.golden]
        if not routed:
            return
        now = utcnow()
        owners = [r for r in routed if not r.golden]
        again = await insert_new(self.by_item, [{"_id": f"{r.project}/{r.item_id}", "tasks": [r.event_id]}
                                                for r in owners])
        # insert, not an upsert with $setOnInsert: FerretDB 1.24 drops empty arrays from $setOnInsert.
        # An id already there is this decision's task from an earlier attempt: left as it is.
        await insert_new(self.tasks, [self._task_doc(r, now) for r in routed])
        for index in again:
            r = owners[index]
            key = f"{r.project}/{r.item_id}"
            await self._set_open_tasks(key, "superseded", keep=r.event_id)
            await self.by_item.update_one({"_id": key}, {"$set": {"tasks": [r.event_id]}}, upsert=True)

    @staticmethod
    def _task_doc(routed: ItemRouted, now: Any) -> dict[str, Any]:
        if routed.golden:
            doc = {"project": routed.project, "item_id": routed.item_id, "golden": True, "status": "pool",
                   "tier": Tier.SINGLE.value, "required": 0, "open_slots": 0}
        else:
            doc = {"project": routed.project, "item_id": routed.item_id, "golden": False, "status": "open",
                   "tier": routed.tier.value, "required": routed.required_annotators,
                   "open_slots": routed.required_annotators}
        return {
            "_id": routed.event_id, **doc,
            "annotators": [], "submitted": [], "created_at": now,
            "prelabel": [s.model_dump() for s in routed.top_k],
            "neighbours": [n.model_dump() for n in routed.neighbours],
            "reasons": list(routed.reasons), "spot_check": routed.spot_check,
            # Active learning: the most informative items (closest top-2 pre-label) are leased first.
            "priority": review_priority([s.probability for s in routed.top_k], spot_check=routed.spot_check),
        }

    async def add_calibration(self, session: str, project: str, item_ids: list[str], annotators: list[str]) -> None:
        """One task per item that each of the annotators, and nobody else, gets once (kept in `pending` until leased).

        Routing and final labels leave these tasks alone: a calibration label measures agreement, it is not a vote.
        """
        now = utcnow()
        tasks = [
            {"_id": f"{session}/{item_id}", "project": project, "item_id": item_id, "golden": False, "status": "open",
             "tier": CALIBRATION, "session": session, "order": n, "required": len(annotators),
             "open_slots": len(annotators), "pending": list(annotators), "annotators": [], "submitted": [],
             "skipped": [], "created_at": now, "prelabel": [], "neighbours": [], "reasons": [],
             "spot_check": False, "priority": 0.0}
            for n, item_id in enumerate(item_ids)
        ]
        async def store() -> None:  # under the lock, with claim_calibration's check of open sessions
            await insert_new(self.tasks, tasks)
            self._calibrating[project] = True

        await self._serial(store)

    async def current_lease(self, project: str, annotator: str) -> Lease | None:
        doc = await self.leases.find_one(
            {"project": project, "annotator": annotator, "state": "leased", "expires_at": {"$gt": utcnow()}}
        )
        if doc is None:
            return None
        task = await self.tasks.find_one({"_id": doc["task_id"]})
        return Lease(doc["_id"], task, doc["expires_at"], doc.get("guideline_version")) if task else None

    async def next_lease(self, project: str, annotator: str, role: Role, golden_turn: bool,
                         guideline_version: int = 1) -> Lease | None:
        """The annotator's current lease, else their next calibration task, else a golden task when it is their
        turn, else a claimed slot. A new lease records the guideline version the annotator is shown."""

        async def choose() -> Lease | None:
            lease = await self.current_lease(project, annotator)
            if lease is None:
                lease = await self.claim_calibration(project, annotator, guideline_version)
            if lease is None and golden_turn:
                lease = await self.claim_golden(project, annotator, guideline_version)
            if lease is None:
                lease = await self.claim(project, annotator, role, guideline_version)
            return lease

        return await self._serial(choose)

    async def claim_calibration(self, project: str, annotator: str, guideline_version: int = 1) -> Lease | None:
        """The annotator's next calibration task, in session order (under the lock)."""
        if self._calibrating.get(project) is False:
            return None
        task = await self.tasks.find_one(
            {"project": project, "status": "open", "tier": CALIBRATION, "pending": annotator},
            sort=[("created_at", 1), ("order", 1)],
        )
        if task is None:
            open_sessions = await self.tasks.find_one({"project": project, "status": "open", "tier": CALIBRATION},
                                                      {"_id": 1})
            self._calibrating[project] = open_sessions is not None
            return None
        lease = await self._lease(task, annotator, guideline_version)  # lease first, as in claim()
        await self.tasks.update_one({"_id": task["_id"]}, {"$inc": {"open_slots": -1}, "$pull": {"pending": annotator},
                                                          "$push": {"annotators": annotator}})
        return lease

    async def claim(self, project: str, annotator: str, role: Role, guideline_version: int = 1) -> Lease | None:
        """Take one open slot of the most informative (then oldest) task this annotator has not had (under the lock)."""
        tiers = [Tier.EXPERT.value] if role is Role.EXPERT else []
        tiers_rest = [t.value for t in Tier if t is not Tier.EXPERT]
        for allowed in ([tiers, tiers_rest] if tiers else [tiers_rest]):
            task = await self.tasks.find_one(
                {"project": project, "status": "open", "open_slots": {"$gt": 0},
                 "annotators": {"$ne": annotator}, "tier": {"$in": allowed}},
                sort=[("priority", -1), ("created_at", 1)],
            )
            if task is None:
                continue
            # The lease first, then the slot (the lock makes the pair atomic within this process). Killed in
            # between, the slot is still free and the lease simply expires; the other order left a slot taken
            # by nobody, and the item waited for that annotator forever (found in the crash run).
            lease = await self._lease(task, annotator, guideline_version)
            await self.tasks.update_one({"_id": task["_id"]},
                                        {"$inc": {"open_slots": -1}, "$push": {"annotators": annotator}})
            task["open_slots"] -= 1
            task["annotators"] = [*task.get("annotators", []), annotator]
            return lease
        return None

    async def claim_golden(self, project: str, annotator: str, guideline_version: int = 1) -> Lease | None:
        seen = [d["item_id"] async for d in self.golden_seen.find({"annotator": annotator, "project": project})]
        task = await self.tasks.find_one(
            {"project": project, "status": "pool", "golden": True, "item_id": {"$nin": seen}}, sort=[("created_at", 1)]
        )
        if task is None:
            return None
        await self.golden_seen.update_one(
            {"_id": f"{annotator}/{project}/{task['item_id']}"},
            {"$set": {"annotator": annotator, "project": project, "item_id": task["item_id"]}},
            upsert=True,
        )
        return await self._lease(task, annotator, guideline_version)

    async def _lease(self, task: dict[str, Any], annotator: str, guideline_version: int) -> Lease:
        now = utcnow()
        expires = now + timedelta(seconds=self.lease_seconds)
        lease_id = lease_id_for(task["_id"], annotator)
        await self.leases.replace_one(
            {"_id": lease_id},
            {"task_id": task["_id"], "project": task["project"], "item_id": task["item_id"], "annotator": annotator,
             "state": "leased", "leased_at": now, "expires_at": expires, "golden": task.get("golden", False),
             "session": task.get("session"), "guideline_version": guideline_version},
            upsert=True,
        )
        return Lease(lease_id, task, expires, guideline_version, fresh=True)

    async def get_lease(self, lease_id: str) -> dict[str, Any] | None:
        return await self.leases.find_one({"_id": lease_id})

    async def finish(self, lease: dict[str, Any], state: str, submission: str | None = None) -> None:
        """Mark a lease submitted or skipped; fails if it expired or was already used.

        submission names the submission that finishes it: the same submission finishing it again (a
        client's retry after the gateway died between this step and storing the submission) goes through.
        """
        await self._serial(lambda: self._finish(lease, state, submission))

    async def _finish(self, lease: dict[str, Any], state: str, submission: str | None = None) -> None:
        now = utcnow()
        result = await self.leases.update_one(
            {"_id": lease["_id"], "state": "leased", "expires_at": {"$gt": now}},
            {"$set": {"state": state, "finished_at": now, "submission": submission}},
        )
        if result.modified_count != 1:
            current = await self.leases.find_one({"_id": lease["_id"]})
            if current and current["state"] in ("leased", "expired"):
                raise LeaseError("expired", "the lease has expired; lease the task again")
            if not (current and submission and current["state"] == state and current.get("submission") == submission):
                raise LeaseError("finished", f"the lease is already {current['state'] if current else 'gone'}")
        if lease.get("golden"):
            return
        if state == "submitted" or lease.get("session"):
            # A skipped calibration task is done for that annotator: nobody else may take their place.
            field = "submitted" if state == "submitted" else "skipped"
            task = await self.tasks.find_one_and_update(
                {"_id": lease["task_id"]}, {"$addToSet": {field: lease["annotator"]}},
                return_document=ReturnDocument.AFTER,
            )
            if task and len(task["submitted"]) + len(task.get("skipped", [])) >= task["required"]:
                await self.tasks.update_one({"_id": task["_id"], "status": "open"}, {"$set": {"status": "done"}})
        else:  # skipped: the slot goes back, but not to the same annotator
            await self.tasks.update_one({"_id": lease["task_id"], "status": "open"}, {"$inc": {"open_slots": 1}})

    async def expire_leases(self) -> int:
        """Return every expired lease's slot to its task; the annotator may take it again."""
        return await self._serial(self._expire_leases)

    async def _expire_leases(self) -> int:
        count = 0
        while True:
            lease = await self.leases.find_one_and_update(
                {"state": "leased", "expires_at": {"$lte": utcnow()}}, {"$set": {"state": "expired"}}
            )
            if lease is None:
                return count
            count += 1
            if not lease.get("golden"):
                await self._give_back(lease)

    async def _requeue_annotator(self, annotator: str) -> int:
        """Take back an annotator's open leases (e.g. when qc suspends them)."""
        count = 0
        async for lease in self.leases.find({"annotator": annotator, "state": "leased"}):
            result = await self.leases.update_one(
                {"_id": lease["_id"], "state": "leased"}, {"$set": {"state": "revoked"}}
            )
            if result.modified_count and not lease.get("golden"):
                count += 1
                await self._give_back(lease)
        return count

    async def _give_back(self, lease: dict[str, Any]) -> None:
        """An unfinished lease's slot returns to its task; a calibration slot only to the same annotator."""
        task = await self.tasks.find_one({"_id": lease["task_id"], "status": "open"}, {"annotators": 1})
        if task is None or lease["annotator"] not in task.get("annotators", []):
            return  # the slot was never taken (the gateway died between writing the lease and taking it)
        update: dict[str, Any] = {"$inc": {"open_slots": 1}, "$pull": {"annotators": lease["annotator"]}}
        if lease.get("session"):
            update["$push"] = {"pending": lease["annotator"]}
        await self.tasks.update_one({"_id": lease["task_id"], "status": "open"}, update)

    async def apply(self, ops: Sequence[tuple[str, Any]]) -> None:
        """A consumed batch's changes, in order, in one turn of the lock: ("add", ItemRouted),
        ("close", (project, item_id)) or ("requeue", annotator). One turn per event let the annotators'
        lease calls, each a scan of the task queue, take the lock between every two events of a batch."""
        async def run() -> None:
            adds: list[ItemRouted] = []
            for kind, arg in ops:
                if kind == "add":
                    adds.append(arg)
                    continue
                await self._add_all(adds)  # a run of adds first: a close after them must see their tasks
                adds = []
                if kind == "close":
                    await self._set_open_tasks(f"{arg[0]}/{arg[1]}", "closed")
                elif kind == "requeue":
                    await self._requeue_annotator(arg)
                else:
                    raise ValueError(f"unknown queue operation {kind!r}")
            await self._add_all(adds)

        if ops:
            await self._serial(run)

    async def _set_open_tasks(self, key: str, status: str, keep: str | None = None) -> None:
        """Give the item's open routed tasks (calibration tasks are not among them) a final status."""
        doc = await self.by_item.find_one({"_id": key})
        for task_id in (doc or {}).get("tasks", []):
            if task_id != keep:
                await self.tasks.update_one({"_id": task_id, "status": "open"}, {"$set": {"status": status}})

    async def open_counts(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        async for task in self.tasks.find({"status": "open"}, {"project": 1, "tier": 1}):
            key = (task["project"], task["tier"])
            counts[key] = counts.get(key, 0) + 1
        return counts
