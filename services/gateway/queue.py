"""Task queues and leases in the gateway's database: who may work on what, and for how long.

Claims are decided by inserts of unique `_id`s into `claims`, never by reading and rewriting a task:
- `{task}#{k}` is slot k of the task (k < required), held by one lease at a time;
- `{task}@{annotator}` says the annotator is or was on the item, so nobody gets the same item twice.
A duplicate key means "taken", and the claimer tries the next slot or task. MongoDB and FerretDB 1.24 (where
`_id` is SQLite's primary key) both make that insert atomic across processes, whereas FerretDB applies a
conditional find_one_and_update by reading and rewriting the document without isolation, so two gateway
processes could both win one slot. Each live lease also has an `active` document (deleted when it ends), which
names its claims, so the sweeper frees exactly those by `_id`, and scans only the leases in flight.

Every lease, claim and active document has one writer at a time: the claimer while it claims, the holder's
submit/skip only before `expires_at`, the sweepers (on any replica, doing identical idempotent writes) only after
`expires_at + grace`. Which tasks are worth trying comes from an in-memory index
(services/gateway/domain/candidates.py): a hint, confirmed here by `_id` before a lease is handed out.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, TypeVar

from pymongo import DeleteOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from labelmesh.ml.active import review_priority
from labelmesh.runtime.mongo import (
    DUPLICATE_KEY,
    bulk_write,
    delete_by_id,
    find_by_ids,
    insert_new,
    insert_one_new,
    update_by_id,
    upsert_many,
)
from schemas.events import ItemRouted, Tier, utcnow
from schemas.keys import annotator_key, item_key
from services.gateway.auth import Role
from services.gateway.domain.calibration import TIER as CALIBRATION
from services.gateway.domain.candidates import Candidate, OpenTasks
from services.gateway.coalesce import ByIds, Coalescer
from services.gateway.hints import RoutedHint

T = TypeVar("T")
PROBE_BATCH = 16  # candidates whose claims are read in one `_id $in` query
FINISHED = ("submitted", "skipped")
# How long a replica trusts "this project has no calibration session" before asking again: every lease asked
# (a round trip each), while a session made on another replica only needs to reach annotators within seconds.
NO_CALIBRATION_SECONDS = 2.0


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


class _Lost(Enum):
    HAD = "the annotator is or was on this item"
    FULL = "every slot is taken"
    CLOSED = "the task is no longer open"


def lease_id_for(task_id: str, annotator_id: str) -> str:
    return f"{task_id}~{annotator_id}"


def slot_id(task_id: str, k: int) -> str:
    return f"{task_id}#{k}"


def marker_id(task_id: str, annotator_id: str) -> str:
    return f"{task_id}@{annotator_id}"


def _seen_key(annotator_id: str, project: str, item_id: str) -> str:
    """golden_seen's `_id`: one annotator has been served one golden item of one project."""
    return f"{annotator_id}/{item_key(project, item_id)}"


def claimed_by(nonce: str | None) -> Callable[[dict[str, Any]], bool]:
    """Whether a claim, active or lease document still belongs to the claim with this nonce."""
    return lambda doc: doc.get("nonce") == nonce


def _ref(candidate: Candidate) -> dict[str, Any]:
    """What a claim needs of a routed task before it has won a slot; the task itself is read after."""
    return {"_id": candidate.task_id, "project": candidate.project, "item_id": candidate.item_id,
            "required": candidate.required, "golden": False, "status": None}


def counted_claims(routed: ItemRouted) -> list[dict[str, Any]]:
    """A second opinion's task counts the first reviewer's label: their item marker and a submitted slot, so the
    task needs one label more and is never offered to them. Made with the task, by its partition's owner; an
    insert that finds them there (a redelivery) leaves them."""
    docs: list[dict[str, Any]] = []
    for k, annotator in enumerate(routed.counted[:routed.required_annotators]):
        mine = {"task_id": routed.event_id, "annotator": annotator, "nonce": "counted"}
        docs += [{"_id": marker_id(routed.event_id, annotator), **mine},
                 {"_id": slot_id(routed.event_id, k), **mine, "state": "submitted"}]
    return docs


def still_open(task: dict[str, Any]) -> bool:
    return task["status"] == "open"


async def to_end(work: Awaitable[T]) -> T:
    """Run `work` to its end even if the caller is cancelled (gRPC cancels a handler whose client left): a claim
    or finish stopped half-way would hold a slot until its lease expired."""
    return await asyncio.shield(asyncio.ensure_future(work))


def candidate_of(task: dict[str, Any]) -> Candidate:
    return Candidate(task_id=task["_id"], project=task["project"], item_id=task["item_id"], tier=task["tier"],
                     required=task.get("required", 0), priority=task.get("priority", 0.0),
                     created_at=task["created_at"])


def routed_candidate(routed: ItemRouted | RoutedHint) -> Candidate:
    """The index's entry for a routing decision, from the whole event or its broadcast projection (hints.py)."""
    probabilities = [s["probability"] if isinstance(s, dict) else s.probability for s in routed.top_k]
    return Candidate(task_id=routed.event_id, project=routed.project, item_id=routed.item_id,
                     tier=routed.tier.value, required=routed.required_annotators,
                     priority=review_priority(probabilities, spot_check=routed.spot_check),
                     created_at=routed.occurred_at)


async def _insert_in_order(collection: Any, docs: list[dict[str, Any]]) -> int:
    """Insert the documents in one ordered command, stopping at the first whose `_id` exists; how many went in.
    The item marker and the first free slot go in one round trip: each insert is atomic on its own, and a marker
    whose slot was taken is then undone or kept for the next slot, as before."""
    try:
        await collection.insert_many(docs, ordered=True)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if not errors or errors[0].get("code") != DUPLICATE_KEY:
            raise
        return errors[0]["index"]
    return len(docs)


class TaskQueue:
    """Tasks, claims and leases (see the module docstring for why claims are unique inserts)."""

    def __init__(self, db: AsyncDatabase, lease_seconds: float, grace_seconds: float = 5.0,
                 hints: OpenTasks | None = None) -> None:
        self.tasks = db["tasks"]
        self.leases = db["leases"]
        self.claims = db["claims"]
        self.active = db["active_leases"]
        self.current = db["current_leases"]  # {_id: "project/annotator"}: the annotator's latest lease there
        self.golden_seen = db["golden_seen"]
        self.calibrating = db["calibrating"]  # {_id: project}: the project has had a calibration session
        # The routed tasks of each item ({_id: "project/item", tasks: [...]}), so that superseding and closing
        # an item's tasks are lookups by _id: FerretDB 1.24 filters anything else by reading every task.
        self.by_item = db["item_tasks"]
        self.items = db["items"]  # the ingested items: a task carries its item's text, read once when it is made
        self.lease_seconds = lease_seconds
        self.grace_seconds = grace_seconds
        self.hints = hints if hints is not None else OpenTasks()
        # Claims this process has in flight per task: skipping a task that they may already fill spares the
        # database a herd of losing inserts. A hint like the index; the inserts decide.
        self._inflight: Counter[str] = Counter()
        # Under load, each replica tries a probed batch's tasks in an order of its own: in priority order, two
        # replicas sent their annotators after the same tasks in lockstep and half of all claims lost (lease
        # p99 10.8 s at 2 replicas in bench/lease_path.py). One annotator alone still gets the strict order.
        self._salt = uuid.uuid4().hex
        self._calibrating_known: set[str] = set()  # projects seen with a calibration session (never undone)
        self._no_calibration_until: dict[str, float] = {}  # project -> monotonic time its "no session" expires
        # A won claim's lease document and the annotator's pointer to it, written with those of the other claims
        # won meanwhile (two commands per batch, not two per lease); each is written before its lease is returned.
        self._records: Coalescer[tuple[dict[str, Any], dict[str, Any]], None] = Coalescer(self._write_records)
        self._rotation = int(self._salt[:8], 16)
        # The `active` inserts of claims made meanwhile in one command: each is answered by its own duplicate key.
        self._actives: Coalescer[dict[str, Any], bool] = Coalescer(self._insert_actives)
        # A finished lease's slot and active document, released with those of the leases finished meanwhile.
        self._releases: Coalescer[tuple[str, str | None, str | None], None] = Coalescer(self._release)
        # Lookups by `_id` of concurrent calls, one `_id $in` query per collection and batch.
        self._lease_reads = ByIds(self.leases)
        self._pointer_reads = ByIds(self.current)
        self._task_reads = ByIds(self.tasks)
        self._claim_reads = ByIds(self.claims, {"state": 1, "task_id": 1})
        self._closes: Coalescer[str, None] = Coalescer(self._close)
        self._finishes: Coalescer[tuple[str, dict[str, Any]], None] = Coalescer(self._write_finishes)

    async def ensure_indexes(self) -> None:
        await self.tasks.create_index([("project", 1), ("status", 1)])
        await self.leases.create_index([("annotator", 1), ("project", 1), ("item_id", 1)])

    async def has_leased(self, project: str, item_id: str, annotator: str) -> bool:
        """Whether the annotator holds or held a lease on the item (FlagItem's check; rare, so a query, not a hint)."""
        return await self.leases.find_one({"annotator": annotator, "project": project, "item_id": item_id},
                                          {"_id": 1}) is not None

    async def load_hints(self) -> None:
        """The open tasks and golden pool into the index, once at start (events keep it current afterwards)."""
        async for task in self.tasks.find({"status": {"$in": ["open", "pool"]}, "tier": {"$ne": CALIBRATION}},
                                          {"project": 1, "item_id": 1, "tier": 1, "required": 1, "priority": 1,
                                           "created_at": 1, "golden": 1}):
            self.hints.add(candidate_of(task), golden=bool(task.get("golden")))

    def hear(self, routed: ItemRouted | RoutedHint) -> None:
        """What any replica learns from item.routed (whether or not it owns the item's partition)."""
        if routed.golden:
            self.hints.add(routed_candidate(routed), golden=True)
        elif routed.required_annotators > 0:
            self.hints.replace_item(routed_candidate(routed))

    async def _add_all(self, batch: Sequence[ItemRouted]) -> None:
        """A task per routing decision that needs humans; a re-route replaces the item's open task.

        New items (nearly all of them) take one insert per collection for the whole run of decisions; an
        item that already had a task (a re-route, or a redelivery) then takes the per-item path, in order,
        once every new task exists.
        """
        await self._withdraw_unclaimed([r for r in batch if r.promoted and r.required_annotators == 0 and not r.golden])
        routed = [r for r in batch if r.required_annotators > 0 or r.golden]
        if not routed:
            return
        owners = [r for r in routed if not r.golden]
        texts = await self._texts(routed)
        again = await insert_new(self.by_item, [{"_id": item_key(r.project, r.item_id), "tasks": [r.event_id]}
                                                for r in owners])
        # insert, not an upsert with $setOnInsert: FerretDB 1.24 drops empty arrays from $setOnInsert.
        # An id already there is this decision's task from an earlier attempt: left as it is.
        await insert_new(self.tasks, [self._task_doc(r, texts.get(item_key(r.project, r.item_id))) for r in routed])
        await insert_new(self.claims, [doc for r in owners for doc in counted_claims(r)])
        for index in again:
            r = owners[index]
            key = item_key(r.project, r.item_id)
            await self._set_open_tasks(key, "superseded", keep=r.event_id)
            await self.by_item.update_one({"_id": key}, {"$set": {"tasks": [r.event_id]}}, upsert=True)
        for r in routed:
            self.hear(r)

    async def _withdraw_unclaimed(self, promoted: Sequence[ItemRouted]) -> None:
        """Items promoted to auto (services/router/domain/promote.py): their open routed tasks that nobody has
        claimed a slot of leave the queue, in four commands for the whole run.

        A task someone holds or answered stays, and so does an expert's (a flag sent the item there): its label
        reaches qc, which keeps it with the item's votes while the auto label stands (services/qc/finalize.py). A
        claim won between the read of the claims and the write below has the same outcome: one label more,
        nothing lost or decided twice.
        """
        if not promoted:
            return
        items = await find_by_ids(self.by_item, [item_key(r.project, r.item_id) for r in promoted])
        tasks = [t for t in await find_by_ids(self.tasks, [i for d in items for i in d.get("tasks", [])],
                                              {"status": 1, "tier": 1, "required": 1})
                 if still_open(t) and t.get("tier") != Tier.EXPERT.value]
        claimed = {d["task_id"] for d in await find_by_ids(
            self.claims, [slot_id(t["_id"], k) for t in tasks for k in range(t.get("required", 0))], {"task_id": 1})}
        unclaimed = [t["_id"] for t in tasks if t["_id"] not in claimed]
        await bulk_write(self.tasks, [UpdateOne({"_id": i, "status": "open"}, {"$set": {"status": "superseded"}})
                                      for i in unclaimed], ordered=False)
        for task_id in unclaimed:
            self.hints.remove(task_id)

    async def _texts(self, routed: Sequence[ItemRouted]) -> dict[str, str]:
        """The items' texts by "project/item" key, in one `_id $in` read for the whole batch: a lease then hands out
        its task without a read of the item (one round trip less on every lease; bench/lease_path.py)."""
        keys = [item_key(r.project, r.item_id) for r in routed]
        return {d["_id"]: d.get("text", "") for d in await find_by_ids(self.items, keys, {"text": 1})}

    @staticmethod
    def _task_doc(routed: ItemRouted, text: str | None = None) -> dict[str, Any]:
        if routed.golden:
            doc = {"project": routed.project, "item_id": routed.item_id, "golden": True, "status": "pool",
                   "tier": Tier.SINGLE.value, "required": 0}
        else:
            doc = {"project": routed.project, "item_id": routed.item_id, "golden": False, "status": "open",
                   "tier": routed.tier.value, "required": routed.required_annotators}
        candidate = routed_candidate(routed)
        return {
            "_id": routed.event_id, **doc, "created_at": candidate.created_at,
            "prelabel": [s.model_dump() for s in routed.top_k],
            "model_version": routed.model_version,
            "neighbours": [n.model_dump() for n in routed.neighbours],
            "reasons": list(routed.reasons), "spot_check": routed.spot_check,
            # Active learning: the most informative items (closest top-2 pre-label) are leased first.
            "priority": candidate.priority,
            # None (not stored): an item not ingested here yet; its lease then reads the item (text_of).
            **({"text": text} if text is not None else {}),
            # Spans projects: the pre-labelled entities the annotator corrects.
            **({"spans": [s.model_dump() for s in routed.spans]} if routed.spans is not None else {}),
        }

    async def text_of(self, task: dict[str, Any]) -> str:
        """The task's item text: stored on the task when it was made, else (a task made before tasks carried it, or
        before its item was ingested here) read from the item."""
        if "text" in task:
            return task["text"]
        item = await self.items.find_one({"_id": item_key(task['project'], task['item_id'])}, {"text": 1})
        return item.get("text", "") if item else ""

    async def add_calibration(self, session: str, project: str, item_ids: list[str], annotators: list[str]) -> None:
        """One task per item that each of the annotators, and nobody else, gets once: annotator n of `pending`
        holds slot n. Routing and final labels leave these tasks alone: a calibration label measures agreement."""
        now = utcnow()
        texts = {d["_id"]: d.get("text", "") for d in await find_by_ids(
            self.items, [item_key(project, item_id) for item_id in item_ids], {"text": 1})}
        tasks = [
            {"_id": f"{session}/{item_id}", "project": project, "item_id": item_id, "golden": False, "status": "open",
             "tier": CALIBRATION, "session": session, "order": n, "required": len(annotators),
             "pending": list(annotators), "created_at": now, "prelabel": [], "neighbours": [], "reasons": [],
             "spot_check": False, "priority": 0.0,
             **({"text": texts[item_key(project, item_id)]} if item_key(project, item_id) in texts else {})}
            for n, item_id in enumerate(item_ids)
        ]
        await insert_new(self.tasks, tasks)
        await self.calibrating.update_one({"_id": project}, {"$set": {"since": now}}, upsert=True)
        self._calibrating_known.add(project)

    async def current_lease(self, project: str, annotator: str) -> Lease | None:
        now = utcnow()
        pointer = await self._pointer_reads.one(annotator_key(project, annotator))
        if pointer is None or pointer["expires_at"] <= now:
            return None
        doc = await self._lease_reads.one(pointer["lease_id"])
        if doc is None or doc["state"] != "leased" or doc["expires_at"] <= now:
            return None
        task = await self._task_reads.one(doc["task_id"])
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

        return await to_end(choose())

    async def _has_calibration(self, project: str) -> bool:
        """Whether the project ever had a calibration session: once true it stays true, so that is remembered; a
        "no" is asked again after NO_CALIBRATION_SECONDS (a session created on another replica shows up within
        that, one created here at once)."""
        if project in self._calibrating_known:
            return True
        now = time.monotonic()
        if now < self._no_calibration_until.get(project, 0.0):
            return False
        if await self.calibrating.find_one({"_id": project}, {"_id": 1}) is None:
            self._no_calibration_until[project] = now + NO_CALIBRATION_SECONDS
            return False
        self._calibrating_known.add(project)
        return True

    async def claim_calibration(self, project: str, annotator: str, guideline_version: int = 1) -> Lease | None:
        """The annotator's next calibration task, in session order."""
        if not await self._has_calibration(project):
            return None  # the common case: this project never had a session
        tasks = [t async for t in self.tasks.find(
            {"project": project, "status": "open", "tier": CALIBRATION, "pending": annotator},
            sort=[("created_at", 1), ("order", 1)])]
        if not tasks:
            return None
        had = {d["task_id"] for d in await find_by_ids(self.claims, [marker_id(t["_id"], annotator) for t in tasks],
                                                        {"task_id": 1})}
        for task in tasks:
            if task["_id"] not in had:
                lease = await self._take(task, annotator, [task["pending"].index(annotator)], guideline_version)
                if isinstance(lease, Lease):
                    return lease
        return None

    async def claim(self, project: str, annotator: str, role: Role, guideline_version: int = 1) -> Lease | None:
        """One open slot of the most informative (then oldest) task this annotator has not had."""
        rest = frozenset(t.value for t in Tier if t is not Tier.EXPERT)
        for tiers in ([frozenset({Tier.EXPERT.value}), rest] if role is Role.EXPERT else [rest]):
            deferred: list[Candidate] = []  # passed over for this process's claims in flight; tried last
            batch: list[Candidate] = []
            for candidate in self.hints.ranked(project, annotator, tiers):
                batch.append(candidate)
                if len(batch) == PROBE_BATCH:
                    if lease := await self._claim_one_of(batch, annotator, guideline_version, deferred):
                        return lease
                    batch = []
            if batch and (lease := await self._claim_one_of(batch, annotator, guideline_version, deferred)):
                return lease
            for start in range(0, len(deferred), PROBE_BATCH):
                if lease := await self._claim_one_of(deferred[start:start + PROBE_BATCH], annotator,
                                                     guideline_version):
                    return lease
        return None

    async def _claim_one_of(self, batch: list[Candidate], annotator: str, guideline_version: int,
                            deferred: list[Candidate] | None = None) -> Lease | None:
        """The first of these candidates that the claims say is free for the annotator, confirmed and taken.

        With `deferred`, a task whose free slots this process's claims in flight may fill goes there instead.
        """
        ids = [marker_id(c.task_id, annotator) for c in batch]
        ids += [slot_id(c.task_id, k) for c in batch for k in range(c.required)]
        taken = {d["_id"]: d.get("state") for d in await self._claim_reads.many(ids)}
        if self._inflight:
            batch = sorted(batch, key=lambda c: hashlib.blake2b(f"{self._salt}{c.task_id}".encode()).digest())
        for candidate in batch:
            if marker_id(candidate.task_id, annotator) in taken:
                self.hints.mark_had(annotator, candidate.task_id)
                continue
            slots = [taken.get(slot_id(candidate.task_id, k)) for k in range(candidate.required)]
            if all(state in FINISHED for state in slots):
                self.hints.remove(candidate.task_id)  # answered by everyone it needs: never free again
                continue
            free = [k for k, state in enumerate(slots) if state is None]
            if not free:
                self.hints.mark_full(candidate.task_id)
                continue
            if deferred is not None and len(free) <= self._inflight[candidate.task_id]:
                deferred.append(candidate)
                continue
            # Concurrent claimers of one task start at different free slots (here by how many are in flight, across
            # replicas by each one's salt), so that they do not all lose slot 0 but one and try again.
            turn = (self._inflight[candidate.task_id] + self._rotation) % len(free)
            free = free[turn:] + free[:turn]
            self._inflight[candidate.task_id] += 1  # before any await: the next caller here sees it
            try:
                outcome = await self._take(_ref(candidate), annotator, free, guideline_version)
            finally:
                self._inflight[candidate.task_id] -= 1
                if not self._inflight[candidate.task_id]:
                    del self._inflight[candidate.task_id]
            if outcome is _Lost.CLOSED:
                self.hints.remove(candidate.task_id)
                continue
            if isinstance(outcome, Lease):
                return outcome
            if outcome is _Lost.HAD:
                self.hints.mark_had(annotator, candidate.task_id)
            else:
                self.hints.mark_full(candidate.task_id)
        return None

    async def claim_golden(self, project: str, annotator: str, guideline_version: int = 1) -> Lease | None:
        """The oldest golden task of the pool the annotator has not seen (golden_seen, one document per pair)."""
        pool = self.hints.golden(project)
        for start in range(0, len(pool), PROBE_BATCH * 4):
            batch = pool[start:start + PROBE_BATCH * 4]
            tasks = {t["_id"]: t for t in await find_by_ids(self.tasks, batch)}
            seen = {d["_id"] for d in await find_by_ids(
                self.golden_seen, [_seen_key(annotator, project, t['item_id']) for t in tasks.values()], {"_id": 1})}
            for task_id in batch:
                task = tasks.get(task_id)
                if task is None or task["status"] != "pool":
                    continue
                key = _seen_key(annotator, project, task['item_id'])
                if key not in seen and await insert_one_new(
                        self.golden_seen, {"_id": key, "annotator": annotator, "project": project,
                                           "item_id": task["item_id"]}):
                    lease = await self._take(task, annotator, [], guideline_version)
                    if isinstance(lease, Lease):
                        return lease
        return None

    async def _take(self, task: dict[str, Any], annotator: str, slots: Sequence[int],
                    guideline_version: int) -> Lease | _Lost:
        """Claim one of `slots` of the task for the annotator (no slot at all for a golden task), then lease it.

        Order matters for a process killed part-way: the `active` document first, so that whatever follows is
        freed by the sweeper when the lease would have expired; the item marker next, then a slot.
        """
        task_id = task["_id"]
        lease_id = lease_id_for(task_id, annotator)
        nonce = uuid.uuid4().hex  # this claim's mark on its documents: a late sweeper never frees a newer claim
        now = utcnow()
        expires = now + timedelta(seconds=self.lease_seconds)
        golden = bool(task.get("golden"))
        names = [] if golden else [marker_id(task_id, annotator), *(slot_id(task_id, k) for k in slots)]
        if not await self._actives({"_id": lease_id, "task_id": task_id, "annotator": annotator,
                                    "nonce": nonce, "expires_at": expires, "claims": names}):
            return _Lost.HAD  # the annotator's lease on this task is still live (another of their calls)
        mine = {"task_id": task_id, "annotator": annotator, "nonce": nonce}
        held = None
        if not golden:
            marker = {"_id": marker_id(task_id, annotator), **mine}
            slot_docs = [{"_id": slot_id(task_id, k), **mine, "state": "leased"} for k in slots]
            inserted = await _insert_in_order(self.claims, [marker, *slot_docs[:1]])
            if inserted == 0:
                await delete_by_id(self.active, lease_id, claimed_by(nonce))
                return _Lost.HAD
            if inserted == 2:
                held = slot_docs[0]["_id"]
            for doc in slot_docs[1:] if held is None else ():
                if await insert_one_new(self.claims, doc):
                    held = doc["_id"]
                    break
            if held is None:
                await self._undo(lease_id, [marker_id(task_id, annotator)], nonce)
                return _Lost.FULL
            if task["status"] is None:  # a candidate from the index: confirmed by _id once a slot is won
                stored = await self._task_reads.one(task_id)
                if stored is None or stored["status"] != "open":
                    await self._undo(lease_id, [held, marker_id(task_id, annotator)], nonce)
                    # Not stored yet (heard of on item.routed before its partition's owner wrote it): try later.
                    return _Lost.FULL if stored is None else _Lost.CLOSED
                task = stored
        await self._records((
            {"_id": lease_id, "task_id": task_id, "project": task["project"], "item_id": task["item_id"],
             "annotator": annotator, "state": "leased", "leased_at": now, "expires_at": expires, "golden": golden,
             "session": task.get("session"), "guideline_version": guideline_version, "slot": held, "nonce": nonce,
             "required": task.get("required", 0)},
            {"_id": annotator_key(task['project'], annotator), "lease_id": lease_id, "expires_at": expires},
        ))
        self.hints.mark_had(annotator, task_id)
        return Lease(lease_id, task, expires, guideline_version, fresh=True)

    async def _write_records(self, batch: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> list[None]:
        """Lease documents replaced (a lease of the same task by the same annotator after an expiry has the same
        `_id`) and the annotators' current-lease pointers: each lease's documents are its claimer's alone."""
        await upsert_many(self.leases, [lease for lease, _ in batch])
        pointers = {p["_id"]: p for _, p in batch}  # one annotator's two leases at once: one pointer, as before
        await bulk_write(self.current, [ReplaceOne({"_id": key}, {k: v for k, v in p.items() if k != "_id"},
                                                   upsert=True) for key, p in pointers.items()], ordered=False)
        return [None] * len(batch)

    async def _write_finishes(self, batch: Sequence[tuple[str, dict[str, Any]]]) -> list[None]:
        await bulk_write(self.leases, [UpdateOne({"_id": lease_id}, {"$set": fields}) for lease_id, fields in batch],
                         ordered=False)
        return [None] * len(batch)

    async def _insert_actives(self, docs: Sequence[dict[str, Any]]) -> list[bool]:
        existed = set(await insert_new(self.active, docs))
        return [n not in existed for n in range(len(docs))]

    async def _release(self, batch: Sequence[tuple[str, str | None, str | None]]) -> list[None]:
        """(lease id, its slot or None, the slot's final state or None to free it) for leases finished just now,
        before their expiry: their slots and active documents are their finishers' alone (a sweeper waits for
        expiry + grace), so they are written by `_id` without a condition."""
        await bulk_write(self.claims, [UpdateOne({"_id": held}, {"$set": {"state": slot_state}}) if slot_state
                                       else DeleteOne({"_id": held}) for _, held, slot_state in batch if held],
                         ordered=False)
        await bulk_write(self.active, [DeleteOne({"_id": lease_id}) for lease_id, _, _ in batch], ordered=False)
        return [None] * len(batch)

    async def _undo(self, lease_id: str, claims: Sequence[str], nonce: str) -> None:
        for name in claims:
            await delete_by_id(self.claims, name, claimed_by(nonce))
        await delete_by_id(self.active, lease_id, claimed_by(nonce))

    async def get_lease(self, lease_id: str) -> dict[str, Any] | None:
        return await self._lease_reads.one(lease_id)

    async def finish(self, lease: dict[str, Any], state: str, submission: str | None = None) -> None:
        """Mark a lease submitted or skipped; fails if it expired or was already used.

        submission names the submission that finishes it: the same submission finishing it again (a
        client's retry after the gateway died between this step and storing the submission) goes through.
        Only before `expires_at`, so never at the same time as a sweeper (which waits a grace period more).
        `lease` is the lease document as this call read it by _id.
        """
        await to_end(self._finish(lease, state, submission))

    async def _finish(self, lease: dict[str, Any], state: str, submission: str | None = None) -> None:
        now = utcnow()
        # `lease` was read by _id in this call (SubmitLabel/SkipTask look it up to check its holder): before its
        # expiry only its holder writes it, so its condition is checked on that read, not on a second one (one
        # round trip less per submission; bench/lease_path.py).
        retry = not (lease["state"] == "leased" and lease["expires_at"] > now)
        if not retry:  # lease documents are never deleted, so the update by `_id` finds this one
            await self._finishes((lease["_id"], {"state": state, "finished_at": now, "submission": submission}))
        if retry:
            current = await self.leases.find_one({"_id": lease["_id"]})
            if current and current["state"] in ("leased", "expired"):
                raise LeaseError("expired", "the lease has expired; lease the task again")
            if not (current and submission and current["state"] == state and current.get("submission") == submission):
                raise LeaseError("finished", f"the lease is already {current['state'] if current else 'gone'}")
        await self._settle(lease, state, retry)

    async def _settle(self, lease: dict[str, Any], state: str, retry: bool) -> None:
        """The rest of a finish once the lease document says `state`: its slot answered or given back, its active
        document gone, the task closed once answered. `retry`: the lease may be past its expiry, so its slot and
        active document are written only while they carry its nonce."""
        # Finished just now, before its expiry, the lease's slot and active document are this call's alone (a
        # sweeper waits for expiry + grace); a retry checks they still carry the lease's nonce.
        nonce = lease.get("nonce")
        held = lease.get("slot")
        answered = state == "submitted" or bool(lease.get("session"))
        # A skipped calibration task is done for that annotator: nobody else may take their place. A skipped
        # routed task's slot goes back, but not to the same annotator (the item marker stays).
        slot_state = state if answered else None
        if retry:
            mine = claimed_by(nonce)
            if held and answered:
                await update_by_id(self.claims, held, {"$set": {"state": state}}, mine)
            elif held:
                await delete_by_id(self.claims, held, mine)
            await delete_by_id(self.active, lease["_id"], mine)
        else:
            await self._releases((lease["_id"], held, slot_state))
        if held and not answered:
            self.hints.mark_free(lease["task_id"])
        if held and answered:
            await self._close_if_answered(lease["task_id"], lease.get("required"))

    async def _close_if_answered(self, task_id: str, required: int | None) -> None:
        """The task is done once each of its slots is submitted (or skipped, for calibration): read from the
        slots by _id, so concurrent submitters never count into one task document. (A one-slot task is done
        by its one finisher; `required` is None for a lease stored before leases carried it.)"""
        if required is None:
            task = await self.tasks.find_one({"_id": task_id}, {"required": 1})
            if task is None:
                return
            required = task["required"]
        slots: list[dict[str, Any]] = []
        if required > 1:
            slots = await self._claim_reads.many([slot_id(task_id, k) for k in range(required)])
        if required == 1 or (len(slots) == required and all(s.get("state") in FINISHED for s in slots)):
            await self._closes(task_id)
            self.hints.remove(task_id)

    async def _close(self, task_ids: Sequence[str]) -> list[None]:
        """Answered tasks done, those of concurrent finishers in one read and one update command. Every finisher
        writes the same terminal value; a task closed or superseded meanwhile (by its partition's owner) stays so."""
        open_ids = [t["_id"] for t in await find_by_ids(self.tasks, task_ids, {"status": 1}) if still_open(t)]
        await bulk_write(self.tasks, [UpdateOne({"_id": i}, {"$set": {"status": "done"}}) for i in open_ids],
                         ordered=False)
        return [None] * len(task_ids)

    async def expire_leases(self) -> int:
        """Free the claims of every lease `grace_seconds` past its expiry (the annotator may take it again).

        Reads only `active_leases` (the leases in flight). Several replicas may sweep the same lease at once:
        each write and delete is by `_id` and the claim's nonce, so doing it twice changes nothing.
        """
        return await to_end(self._expire_leases())

    async def _expire_leases(self) -> int:
        count = 0
        cutoff = utcnow() - timedelta(seconds=self.grace_seconds)
        async for active in self.active.find({"expires_at": {"$lte": cutoff}}):
            nonce = active["nonce"]
            lease = await self.leases.find_one({"_id": active["_id"]})
            if lease and lease.get("nonce") == nonce and (
                    lease["state"] == "skipped" or (lease["state"] == "submitted" and lease.get("submission"))):
                # Its SubmitLabel or SkipTask finished the lease and died before giving up the slot. That finish
                # stands (a label's outbox record is relayed), so it is completed as the call would have: freed
                # whole, a submitted slot would be answered again by another annotator (bench/crash_recovery.py,
                # mid-submit kill), and a skip's item marker would go, offering the skipper the task again.
                await self._settle(lease, lease["state"], retry=True)
                continue
            count += await update_by_id(self.leases, active["_id"], {"$set": {"state": "expired"}},
                                        lambda d: d["state"] == "leased" and d.get("nonce") == nonce)
            for name in active["claims"]:
                await delete_by_id(self.claims, name, claimed_by(nonce))
            await delete_by_id(self.active, active["_id"], claimed_by(nonce))
            self.hints.forget_had(active["annotator"], active["task_id"])
            self.hints.mark_free(active["task_id"])
        return count

    async def _requeue_annotator(self, annotator: str) -> int:
        """Take back an annotator's open leases (e.g. when qc suspends them): revoked now, freed by the sweeper."""
        count = 0
        async for active in self.active.find({"annotator": annotator}):
            count += await update_by_id(self.leases, active["_id"], {"$set": {"state": "revoked"}},
                                        lambda d: d["state"] == "leased")
            await update_by_id(self.active, active["_id"],
                               {"$set": {"expires_at": utcnow() - timedelta(seconds=self.grace_seconds)}},
                               claimed_by(active["nonce"]))
        return count

    async def apply(self, ops: Sequence[tuple[str, Any]]) -> None:
        """A consumed batch's changes, in order: ("add", ItemRouted), ("close", (project, item_id)) or
        ("requeue", annotator). Its partition's owner is the only writer of these tasks."""
        async def run() -> None:
            adds: list[ItemRouted] = []
            for kind, arg in ops:
                if kind == "add":
                    adds.append(arg)
                    continue
                await self._add_all(adds)  # a run of adds first: a close after them must see their tasks
                adds = []
                if kind == "close":
                    await self._set_open_tasks(item_key(*arg), "closed")
                    self.hints.close_item(*arg)
                elif kind == "requeue":
                    await self._requeue_annotator(arg)
                else:
                    raise ValueError(f"unknown queue operation {kind!r}")
            await self._add_all(adds)

        if ops:
            await to_end(run())

    async def _set_open_tasks(self, key: str, status: str, keep: str | None = None) -> None:
        """Give the item's open routed tasks (calibration tasks are not among them) a final status."""
        doc = await self.by_item.find_one({"_id": key})
        for task_id in (doc or {}).get("tasks", []):
            if task_id != keep:
                await update_by_id(self.tasks, task_id, {"$set": {"status": status}}, still_open)
                self.hints.remove(task_id)

    async def open_counts(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        async for task in self.tasks.find({"status": "open"}, {"project": 1, "tier": 1}):
            key = (task["project"], task["tier"])
            counts[key] = counts.get(key, 0) + 1
        return counts
