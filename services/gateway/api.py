"""The gRPC servicers: authenticate, validate everything before writing, then store and publish."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError

from labelmesh.runtime.mongo import bulk_write, find_by_ids, insert_new, upsert_by_id
from labelmesh.runtime.outbox import Outbox, record
from labelmesh.runtime.service import ServiceRuntime
from schemas.events import (
    FlagKind,
    FlagSubject,
    ItemIngested,
    LabelSubmitted,
    ProjectConfigured,
    QcFlagged,
    TextPayload,
    derived_id,
    utcnow,
)
from schemas.rpc import gateway_pb2 as pb
from schemas.rpc import gateway_pb2_grpc as pb_grpc
from services.gateway.auth import ALL_PROJECTS, Caller, Role, bearer, hash_token, new_token, same_secret, token_expired
from services.gateway.bounds import (
    COMMENT_MAX_CHARS,
    DATASET_MAX_CHARS,
    GUIDELINES_MAX_CHARS,
    ID_MAX,
    LABELS_MAX,
    METADATA_KEYS,
    METADATA_VALUE_CHARS,
    SOURCE_MAX_CHARS,
    refuse_oversized,
)
from services.gateway.calibration import (
    Annotator,
    CalibrationError,
    check_item_request,
    pick_annotators,
    pick_items,
    session_id,
)
from services.gateway.coalesce import ByIds, Coalescer
from services.gateway.queue import Lease, LeaseError, TaskQueue
from services.gateway.recent import Recent
from services.gateway.settings import GatewaySettings
from services.gateway.golden import golden_rate_for, should_inject_golden
from services.gateway.limits import RateLimiter

SERVICE = "gateway"
MEMBERSHIPS_MAX = 1_000  # projects one annotator may be a member of
CALIBRATION_STATUS = {"invalid": grpc.StatusCode.INVALID_ARGUMENT, "not_found": grpc.StatusCode.NOT_FOUND,
                      "precondition": grpc.StatusCode.FAILED_PRECONDITION}


class Gateway:
    """State and rules shared by the three gRPC services."""

    def __init__(self, rt: ServiceRuntime, settings: GatewaySettings) -> None:
        self.rt = rt
        self.settings = settings
        self.db = rt.db
        self.queue = TaskQueue(rt.db, settings.lease_seconds, settings.lease_grace_seconds)
        # Annotator documents by token hash and projects, as this replica read them within RECENT_SECONDS.
        self.tokens = Recent()
        self.projects = Recent()
        self._served: Coalescer[tuple[str, int | None], None] = Coalescer(self._count_served)
        self.limits = RateLimiter(settings.rate_limits())
        self.clock = time.time  # wall-clock seconds, for token expiry; a test may replace it
        # Read at each call, not bound here: what the bus publishes with may be wrapped after wiring (tests do).
        self.outbox = Outbox(rt.db, lambda events: self.rt.bus.publish(events), claim_s=settings.relay_claim_s)

    async def tasks_served(self, annotator_id: str) -> int:
        """How many leases the annotator has had, from their counter document (one lookup by _id).

        Until their first lease creates it, the annotator's leases are counted (none, but for leases stored
        before the counter existed).
        """
        doc = await self.db["served"].find_one({"_id": annotator_id})
        if doc is not None:
            return doc["n"]
        return await self.db["leases"].count_documents({"annotator": annotator_id})

    async def count_served(self, annotator_id: str, before: int | None) -> None:
        """One more lease: $inc, not a value computed here, so two replicas leasing to one annotator both count.
        `before` is tasks_served as read before this lease, None when it was not read. Coalesced with the other
        leases handed out meanwhile (services/gateway/coalesce.py)."""
        await self._served((annotator_id, before))

    async def _count_served(self, batch: Sequence[tuple[str, int | None]]) -> list[None]:
        served = self.db["served"]
        counted = {d["_id"] for d in await find_by_ids(served, [a for a, _ in batch], {"_id": 1})}
        await bulk_write(served, [UpdateOne({"_id": a}, {"$inc": {"n": 1}}) for a, _ in batch if a in counted],
                         ordered=False)
        for annotator_id, before in batch:  # an annotator's first lease since the counter existed
            if annotator_id in counted:
                continue
            if (await served.update_one({"_id": annotator_id}, {"$inc": {"n": 1}})).matched_count == 0:
                if before is None:  # the leases stored, this one among them, minus this one
                    before = await self.db["leases"].count_documents({"annotator": annotator_id}) - 1
                await upsert_by_id(served, annotator_id, {"$setOnInsert": {"n": before + 1}})
        return [None] * len(batch)

    async def caller(self, context: grpc.aio.ServicerContext, *roles: Role) -> Caller:
        token = bearer(context.invocation_metadata())
        if token is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing 'authorization: Bearer <token>' metadata")
        if same_secret(token, self.settings.admin_token.get_secret_value()):
            caller = Caller("admin", Role.ADMIN)
        else:
            digest = hash_token(token)
            doc = await self.tokens.get(digest, lambda: self.annotator_by_token(digest))
            if doc is None:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown token")
            if token_expired(doc, self.clock()):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                    f"the token of {doc['_id']} has expired; ask an admin for a new one")
            if doc.get("suspended"):
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"annotator {doc['_id']} is suspended")
            caller = Caller(doc["_id"], Role(doc["role"]), frozenset(doc.get("projects", [ALL_PROJECTS])))
        if roles and caller.role not in roles:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"role {caller.role.value} may not call this; needs one of {[r.value for r in roles]}",
            )
        return caller

    async def annotator_by_token(self, token_sha256: str) -> dict[str, Any] | None:
        """The annotator holding this token: one lookup on the unique token index (ensure_indexes). A revoked or
        rotated token is no longer any annotator's token_sha256, so it finds nobody."""
        return await self.db["annotators"].find_one({"token_sha256": token_sha256})

    async def ensure_indexes(self) -> None:
        await self.db["annotators"].create_index("token_sha256", unique=True)
        await self.queue.ensure_indexes()

    async def member(self, context: grpc.aio.ServicerContext, caller: Caller, project: str) -> None:
        """Abort unless the caller works in the project; the same answer whether the project exists or not."""
        if not caller.member_of(project):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"annotator {caller.annotator_id} is not a member of project {project!r}")

    async def project(self, context: grpc.aio.ServicerContext, project: str, recent: bool = False) -> dict[str, Any]:
        """The project's document; with `recent`, as this replica read it within RECENT_SECONDS (read-only use)."""
        if not project:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "project is required")
        read = lambda: self.db["projects"].find_one({"_id": project})  # noqa: E731
        doc = await (self.projects.get(project, read) if recent else read())
        if doc is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown project {project!r}")
        return doc

    async def mark_published(self, submission_ids: Sequence[str]) -> None:
        await bulk_write(self.db["submissions"], [UpdateOne({"_id": i}, {"$set": {"published": True}})
                                                  for i in submission_ids], ordered=False)

    async def store_guideline_version(self, event: ProjectConfigured) -> None:
        """The event's guideline version, kept for good (the first text stored under a version stays)."""
        await self.db["guidelines"].update_one(
            {"_id": f"{event.project}/{event.guideline_version}"},
            {"$setOnInsert": {"project": event.project, "version": event.guideline_version, "text": event.guidelines,
                              "labels": list(event.labels), "at": utcnow()}},
            upsert=True,
        )

    async def history(self, project: str, item_id: str, kind: str, detail: dict[str, Any], key: str) -> None:
        await self.histories([history_entry(project, item_id, kind, detail, key)])

    async def histories(self, entries: list[dict[str, Any]]) -> None:
        """History entries (from history_entry) in one command; an entry already recorded stays as it was."""
        await insert_new(self.db["history"], entries)


def history_entry(project: str, item_id: str, kind: str, detail: dict[str, Any], key: str) -> dict[str, Any]:
    """One item-history entry, keyed by the event that caused it so a redelivery records nothing twice."""
    return {"_id": key, "project": project, "item_id": item_id, "kind": kind, "at": utcnow(),
            "detail": json.dumps(detail, default=str)}


def ingested_history(event: ItemIngested) -> dict[str, Any]:
    return history_entry(event.project, event.item_id, "ingested",
                         {"source": event.source, "golden": event.golden_label is not None,
                          "trusted": event.trusted_label is not None}, event.event_id)


def _task_message(lease: Lease, project: dict[str, Any]) -> pb.Task:
    task = lease.task
    expert = task["tier"] == "expert"
    return pb.Task(
        task_id=lease.lease_id,
        project=task["project"],
        item_id=task["item_id"],
        text=task.get("text", ""),
        tier=task["tier"],
        prelabel=[pb.LabelProbability(label=s["label"], probability=s["probability"]) for s in task["prelabel"]],
        neighbours=[pb.Neighbour(**n) for n in task["neighbours"]] if expert else [],
        reasons=task["reasons"] if expert else [],
        guideline_version=lease.guideline_version or project["guideline_version"],
        lease_expires_unix_ms=int(lease.expires_at.timestamp() * 1000),
        labels=project["labels"],
        session_id=task.get("session") or "",
        model_version=task.get("model_version") or 0,
    )


class IngestServicer(pb_grpc.IngestServiceServicer):
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def IngestItems(self, request: pb.IngestItemsRequest, context: grpc.aio.ServicerContext) -> pb.IngestItemsResponse:
        caller = await self._ingester(context)
        return await self._ingest(caller, list(request.items), context)

    async def IngestStream(
        self, request_iterator: AsyncIterator[pb.IngestItem], context: grpc.aio.ServicerContext
    ) -> pb.IngestItemsResponse:
        # Authorised before the first item is read: a caller without the role cannot make the gateway buffer.
        caller = await self._ingester(context)
        items = await read_stream(request_iterator, context, self.gw.settings.max_stream_items,
                                  self.gw.settings.max_stream_bytes)
        return await self._ingest(caller, items, context, streamed=True)

    async def _ingester(self, context: grpc.aio.ServicerContext) -> Caller:
        # Ingest writes what every service trains and routes on: only an admin may (an annotator could otherwise
        # plant items, or re-send ids to change them).
        caller = await self.gw.caller(context, Role.ADMIN)
        await self.gw.limits.check(context, "ingest", caller.annotator_id)
        return caller

    async def _ingest(
        self, caller: Caller, items: list[pb.IngestItem], context: grpc.aio.ServicerContext, streamed: bool = False
    ) -> pb.IngestItemsResponse:
        if not items:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no items given")
        if len(items) > self.gw.settings.max_batch_items and not streamed:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{len(items)} items in one request; at most {self.gw.settings.max_batch_items} "
                                "(use IngestStream for large imports)")
        projects: dict[str, dict[str, Any]] = {}
        events: list[ItemIngested] = []
        seen: set[tuple[str, str]] = set()
        for n, item in enumerate(items):
            where = f"item {n} ({item.item_id!r})"
            if item.project not in projects:
                projects[item.project] = await self.gw.project(context, item.project)
            labels = set(projects[item.project]["labels"])
            problem = None
            if not item.item_id or len(item.item_id) > ID_MAX:
                problem = f"item_id must be 1..{ID_MAX} characters"
            elif (item.project, item.item_id) in seen:
                problem = "item_id appears twice in this request"
            elif not item.text.strip():
                problem = "text is empty"
            elif len(item.text) > self.gw.settings.max_text_chars:
                problem = f"text is longer than {self.gw.settings.max_text_chars} characters"
            elif len(item.source) > SOURCE_MAX_CHARS or len(item.dataset) > DATASET_MAX_CHARS:
                problem = f"source and dataset are at most {SOURCE_MAX_CHARS} characters"
            elif (item.golden_label or item.trusted_label) and caller.role is not Role.ADMIN:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{where}: golden/trusted labels need the admin role")
            elif item.golden_label and item.golden_label not in labels:
                problem = f"golden_label {item.golden_label!r} is not in the project's labels"
            elif item.trusted_label and item.trusted_label not in labels:
                problem = f"trusted_label {item.trusted_label!r} is not in the project's labels"
            elif item.golden_label and item.trusted_label:
                problem = "an item is golden or trusted, not both"
            elif len(item.metadata) > METADATA_KEYS or any(
                    len(k) > ID_MAX or len(v) > METADATA_VALUE_CHARS for k, v in item.metadata.items()):
                problem = f"metadata: at most {METADATA_KEYS} keys of {ID_MAX} and values of {METADATA_VALUE_CHARS} characters"
            if problem:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{where}: {problem}; nothing was ingested")
            seen.add((item.project, item.item_id))
            digest = content_digest(item.text, item.golden_label or None, item.trusted_label or None)
            events.append(
                ItemIngested(
                    # The same item re-sent is the same event: consumers drop the duplicate.
                    event_id=derived_id("ingested", item.project, item.item_id, digest),
                    producer=SERVICE,
                    project=item.project,
                    item_id=item.item_id,
                    payload=TextPayload(text=item.text),
                    source=item.source or "api",
                    dataset=item.dataset or "default",
                    golden_label=item.golden_label or None,
                    trusted_label=item.trusted_label or None,
                )
            )
        await refuse_oversized(context, events, "item")
        metadata = {item.item_id: dict(item.metadata) for item in items}  # shown by GetItem, ExportFinalLabels
        docs = [
            {"_id": f"{event.project}/{event.item_id}", "project": event.project, "item_id": event.item_id,
             "text": event.payload.text, "golden_label": event.golden_label, "trusted_label": event.trusted_label,
             "content_sha256": content_digest(event.payload.text, event.golden_label, event.trusted_label),
             "source": event.source, "dataset": event.dataset, "ingested_at": event.occurred_at,
             "metadata": metadata[event.item_id]}
            for event in events
        ]
        # An id already stored with other content is refused, never overwritten (its golden answer, its text
        # and everything trained on it would change under the same id); the same content again is a no-op.
        # Checked before anything is written, so a refused request ingests nothing.
        changed = await self._changed(docs)
        if changed:
            await self._refuse(context, changed, "nothing was ingested")
        # Bulk commands, not a round trip per item: ingest is on every item's path (bench/pipeline_throughput.py).
        # Inserts of unique ids: of two replicas ingesting one new id at once, one wins and the other compares.
        # Written down first: a gateway that dies before it publishes leaves the items to the relay (relay.py).
        await self.gw.outbox.add([record(event, "ingest") for event in events])
        again = await insert_new(self.gw.db["items"], docs)
        raced = await self._changed([docs[i] for i in again]) if again else []
        refused = [e.event_id for e in events if e.item_id in raced]
        events = [e for e in events if e.item_id not in raced]
        await self.gw.rt.bus.publish(events)
        await self.gw.histories([ingested_history(event) for event in events])
        await self.gw.outbox.done([*refused, *(e.event_id for e in events)])
        if raced:
            await self._refuse(context, raced, "the others in this request were ingested")
        return pb.IngestItemsResponse(accepted=len(events), item_ids=[e.item_id for e in events])

    async def _changed(self, docs: list[dict[str, Any]]) -> list[str]:
        """The item ids among these new documents that are stored with other content."""
        stored = await find_by_ids(self.gw.db["items"], [d["_id"] for d in docs],
                                   {"text": 1, "golden_label": 1, "trusted_label": 1})
        before = {d["_id"]: content_digest(d["text"], d.get("golden_label"), d.get("trusted_label")) for d in stored}
        return sorted(d["item_id"] for d in docs if before.get(d["_id"], d["content_sha256"]) != d["content_sha256"])

    @staticmethod
    async def _refuse(context: grpc.aio.ServicerContext, changed: list[str], rest: str) -> None:
        await context.abort(grpc.StatusCode.ALREADY_EXISTS,
                            f"{len(changed)} item_id(s) exist with other text or labels (ingest them under new ids): "
                            f"{', '.join(changed[:20])}; {rest}")


async def read_stream(items: AsyncIterator[pb.IngestItem], context: grpc.aio.ServicerContext, max_items: int,
                      max_bytes: int) -> list[pb.IngestItem]:
    """A stream's items, refused with RESOURCE_EXHAUSTED as soon as it passes either cap (before it is buffered)."""
    read: list[pb.IngestItem] = []
    size = 0
    async for item in items:
        size += item.ByteSize()
        if len(read) >= max_items or size > max_bytes:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"a stream carries at most {max_items} items and {max_bytes} bytes; split it into "
                                "several streams; nothing was ingested")
        read.append(item)
    return read


def content_digest(text: str, golden_label: str | None, trusted_label: str | None) -> str:
    """What makes two ingests of one id the same item: its text and its golden or trusted answer."""
    return hashlib.sha256(f"{text}\x00{golden_label or ''}\x00{trusted_label or ''}".encode()).hexdigest()


class AnnotationServicer(pb_grpc.AnnotationServiceServicer):
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._submissions = Coalescer(self._store_submissions)
        self._outbox_adds: Coalescer[dict[str, Any], None] = Coalescer(self._add_records)
        self._submission_reads = ByIds(gw.db["submissions"])

    async def LeaseTask(self, request: pb.LeaseTaskRequest, context: grpc.aio.ServicerContext) -> pb.Task:
        caller = await self.gw.caller(context, Role.ANNOTATOR, Role.EXPERT)
        await self.gw.limits.check(context, "lease", caller.annotator_id)
        await self.gw.member(context, caller, request.project)
        project = await self.gw.project(context, request.project, recent=True)
        settings = self.gw.settings
        served, golden_turn = None, False
        # Whose turn it is matters only where a golden task could be served: with no golden pool in this
        # replica's index (claim_golden's own source) or a rate of 0, the counter is only counted (one read less).
        if self.gw.queue.hints.golden(request.project) and (settings.golden_rate or settings.golden_settled_rate):
            served = await self.gw.tasks_served(caller.annotator_id)
            rate = golden_rate_for(served, settings.golden_rate, settings.golden_settled_rate,
                                   settings.golden_warmup_tasks)
            golden_turn = should_inject_golden(caller.annotator_id, served, rate,
                                               settings.golden_salt.get_secret_value())
        lease = await self.gw.queue.next_lease(request.project, caller.annotator_id, caller.role, golden_turn,
                                               project["guideline_version"])
        if lease is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no task is waiting for you in this project")
        if lease.fresh:
            await self.gw.count_served(caller.annotator_id, served)
        lease.task["text"] = await self.gw.queue.text_of(lease.task)
        return _task_message(lease, project)

    async def _lease_of(self, context: grpc.aio.ServicerContext, caller: Caller, task_id: str) -> dict[str, Any]:
        if not task_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "task_id is required")
        lease = await self.gw.queue.get_lease(task_id)
        if lease is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown task {task_id!r}")
        if lease["annotator"] != caller.annotator_id:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "this task is leased to someone else")
        return lease

    async def SubmitLabel(self, request: pb.SubmitLabelRequest, context: grpc.aio.ServicerContext) -> pb.SubmitLabelResponse:
        caller = await self.gw.caller(context, Role.ANNOTATOR, Role.EXPERT)
        if not request.idempotency_key or len(request.idempotency_key) > 128:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "idempotency_key must be 1..128 characters")
        if request.time_spent_ms < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "time_spent_ms must not be negative")
        submission_id = f"{caller.annotator_id}/{request.idempotency_key}"
        previous = await self._submission_reads.one(submission_id)
        if previous is not None:
            if previous["lease_id"] != request.task_id or previous["label"] != request.label:
                await context.abort(grpc.StatusCode.ALREADY_EXISTS,
                                    "idempotency_key was already used for a different submission")
            await self._publish(previous)  # a retry after a failed publish completes it
            return pb.SubmitLabelResponse(submission_id=submission_id, duplicate=True)
        lease = await self._lease_of(context, caller, request.task_id)
        project = await self.gw.project(context, lease["project"], recent=True)
        if request.label not in project["labels"]:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"label {request.label!r} is not in project {lease['project']!r}'s labels")
        event = LabelSubmitted(
            event_id=derived_id("submitted", submission_id),
            producer=SERVICE, project=lease["project"], item_id=lease["item_id"], task_id=lease["task_id"],
            annotator_id=caller.annotator_id, role=caller.role.value, label=request.label,
            # The version shown with the task, not one published while the annotator was working on it.
            time_spent_ms=request.time_spent_ms,
            guideline_version=lease.get("guideline_version") or project["guideline_version"],
            idempotency_key=request.idempotency_key, golden=bool(lease.get("golden")),
            session_id=lease.get("session"),
        )
        doc = {"_id": submission_id, "lease_id": request.task_id, "label": request.label,
               "event": event.model_dump_json(), "published": False}
        entry = history_entry(event.project, event.item_id, "label_submitted",
                              {"annotator": caller.annotator_id, "label": request.label,
                               "time_spent_ms": request.time_spent_ms, "guideline_version": event.guideline_version,
                               "session": event.session_id}, event.event_id)
        # Written down before the lease is finished: a gateway that dies anywhere after this leaves the submission
        # to the relay, which finishes what this call did not (relay.py).
        await self._outbox_adds(record(event, "submission", doc=doc, history=entry))
        try:
            await self.gw.queue.finish(lease, "submitted", submission=submission_id)
        except LeaseError as exc:
            # No call with this submission can finish the lease now (the same submission again would go through),
            # so nothing is left to relay: a refused call writes nothing.
            await self.gw.outbox.done([event.event_id])
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        stored = await self._submissions((doc, event, entry))
        return pb.SubmitLabelResponse(submission_id=submission_id, duplicate=not stored)

    async def _add_records(self, records: Sequence[dict[str, Any]]) -> list[None]:
        await self.gw.outbox.add(records)
        return [None] * len(records)

    async def _store_submissions(self, batch: Sequence[tuple[dict[str, Any], LabelSubmitted, dict[str, Any]]]
                                 ) -> list[bool]:
        """Store, publish, mark published and record the history of concurrent submissions, one command (and one
        publish) per step for the batch (services/gateway/coalesce.py); whether each was new (a duplicate `_id`
        is a retry or a concurrent twin, answered duplicate=True as before)."""
        submissions = self.gw.db["submissions"]
        existed = set(await insert_new(submissions, [doc for doc, _, _ in batch]))
        new = [entry for n, entry in enumerate(batch) if n not in existed]
        if new:
            await self.gw.rt.bus.publish([event for _, event, _ in new])
            await self.gw.mark_published([doc["_id"] for doc, _, _ in new])
            await self.gw.histories([history for _, _, history in new])
            await self.gw.outbox.done([event.event_id for _, event, _ in new])
        return [n not in existed for n in range(len(batch))]

    async def _publish(self, submission: dict[str, Any]) -> None:
        """Outbox step: publish the stored submission, then mark it published."""
        if submission.get("published"):
            return
        event = LabelSubmitted.model_validate_json(submission["event"])
        await self.gw.rt.bus.publish([event])
        await self.gw.mark_published([submission["_id"]])
        await self.gw.outbox.done([event.event_id])

    async def SkipTask(self, request: pb.SkipTaskRequest, context: grpc.aio.ServicerContext) -> pb.SkipTaskResponse:
        caller = await self.gw.caller(context, Role.ANNOTATOR, Role.EXPERT)
        if len(request.reason) > COMMENT_MAX_CHARS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"reason is longer than {COMMENT_MAX_CHARS} characters")
        lease = await self._lease_of(context, caller, request.task_id)
        try:
            await self.gw.queue.finish(lease, "skipped")
        except LeaseError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        await self.gw.history(lease["project"], lease["item_id"], "skipped",
                              {"annotator": caller.annotator_id, "reason": request.reason}, f"skip/{lease['_id']}")
        return pb.SkipTaskResponse()

    async def FlagItem(self, request: pb.FlagItemRequest, context: grpc.aio.ServicerContext) -> pb.FlagItemResponse:
        caller = await self.gw.caller(context)
        await self.gw.limits.check(context, "flag", caller.annotator_id)
        await self.gw.member(context, caller, request.project)
        await self.gw.project(context, request.project)
        if not request.comment.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "comment is required")
        if request.item_id and caller.role is not Role.ADMIN:
            # An annotator flags only what they were shown: an item they hold or held a lease for. Any other id,
            # existing or not, gets the same answer, so flags cannot probe which items exist.
            if not await self.gw.queue.has_leased(request.project, request.item_id, caller.annotator_id):
                await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                    f"you hold no lease, and held none, on item {request.item_id!r}")
        elif request.item_id and await self.gw.db["items"].find_one(
                {"_id": f"{request.project}/{request.item_id}"}) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown item {request.item_id!r}")
        subject = FlagSubject.ITEM if request.item_id else FlagSubject.GUIDELINES
        flag = QcFlagged(
            producer=SERVICE, project=request.project, item_id=request.item_id or None, subject=subject,
            subject_id=request.item_id or request.project, kind=FlagKind.ANNOTATOR_FEEDBACK,
            message=request.comment[:COMMENT_MAX_CHARS], evidence={"annotator": caller.annotator_id},
        )
        await self.gw.rt.bus.publish([flag])
        return pb.FlagItemResponse(flag_id=flag.event_id)

    async def GetGuidelines(self, request: pb.GetGuidelinesRequest, context: grpc.aio.ServicerContext) -> pb.Guidelines:
        await self.gw.caller(context)
        project = await self.gw.project(context, request.project)
        if request.version < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "version must be positive, or 0 for the current one")
        if request.version in (0, project["guideline_version"]):
            return pb.Guidelines(project=request.project, version=project["guideline_version"],
                                 text=project["guidelines"], labels=project["labels"])
        doc = await self.gw.db["guidelines"].find_one({"_id": f"{request.project}/{request.version}"})
        if doc is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"project {request.project!r} has no guideline version "
                                                           f"{request.version}")
        return pb.Guidelines(project=request.project, version=doc["version"], text=doc["text"], labels=doc["labels"])


class AdminServicer(pb_grpc.AdminServiceServicer):
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def ConfigureProject(self, request: pb.ConfigureProjectRequest, context: grpc.aio.ServicerContext) -> pb.Project:
        await self.gw.caller(context, Role.ADMIN)
        labels = list(request.labels)
        problem = None
        if len(labels) < 2:
            problem = "a project needs at least two labels"
        elif len(labels) > LABELS_MAX:
            problem = f"a project has at most {LABELS_MAX} labels"
        elif len(set(labels)) != len(labels) or any(not label.strip() for label in labels):
            problem = "labels must be distinct and non-empty"
        elif len(request.guidelines) > GUIDELINES_MAX_CHARS:
            problem = f"guidelines are longer than {GUIDELINES_MAX_CHARS} characters"
        elif request.multi_annotators and not 2 <= request.multi_annotators <= 9:
            problem = "multi_annotators must be between 2 and 9"
        elif request.target_auto_error and not 0 < request.target_auto_error < 1:
            problem = "target_auto_error must be in (0, 1)"
        current = await self.gw.db["projects"].find_one({"_id": request.project})
        version = 1
        if current is not None:
            same = current["labels"] == labels and current["guidelines"] == request.guidelines
            version = current["guideline_version"] + (0 if same else 1)
        try:
            event = ProjectConfigured(
                producer=SERVICE, project=request.project, labels=tuple(labels), guideline_version=version,
                guidelines=request.guidelines, multi_annotators=request.multi_annotators or 3,
                target_auto_error=request.target_auto_error or 0.02,
            )
        except ValueError as exc:
            problem = problem or f"invalid project: {exc}"
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        await refuse_oversized(context, [event], "project")
        await self._store(event)
        return pb.Project(project=request.project, labels=labels, guideline_version=version)

    async def _store(self, event: ProjectConfigured) -> None:
        """The project as configured, its guideline version kept for good, then project.configured.

        The event goes to the outbox first and the project names it (event_id): the relay publishes a record only
        while its project still holds that configuration (relay.py)."""
        await self.gw.outbox.add([record(event, "project")])
        await self.gw.db["projects"].replace_one(
            {"_id": event.project},
            {"labels": list(event.labels), "guidelines": event.guidelines,
             "guideline_version": event.guideline_version, "multi_annotators": event.multi_annotators,
             "target_auto_error": event.target_auto_error, "event_id": event.event_id},
            upsert=True,
        )
        await self.gw.store_guideline_version(event)
        self.gw.projects.forget(event.project)
        await self.gw.rt.bus.publish([event])
        await self.gw.outbox.done([event.event_id])

    async def PublishGuidelines(self, request: pb.PublishGuidelinesRequest,
                                context: grpc.aio.ServicerContext) -> pb.Guidelines:
        await self.gw.caller(context, Role.ADMIN)
        if not request.text.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "text is required")
        if len(request.text) > GUIDELINES_MAX_CHARS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"text is longer than {GUIDELINES_MAX_CHARS} characters")
        current = await self.gw.project(context, request.project)
        version = current["guideline_version"]
        if request.text != current["guidelines"]:  # the same text again (a retry) is not a new version
            version += 1
            # Labels and settings as they are: ConfigureProject would reset settings the caller did not send.
            event = ProjectConfigured(
                producer=SERVICE, project=request.project, labels=tuple(current["labels"]), guideline_version=version,
                guidelines=request.text, multi_annotators=current["multi_annotators"],
                target_auto_error=current["target_auto_error"],
            )
            await refuse_oversized(context, [event], "guidelines")
            await self._store(event)
        return pb.Guidelines(project=request.project, version=version, text=request.text, labels=current["labels"])

    async def CreateAnnotator(self, request: pb.CreateAnnotatorRequest, context: grpc.aio.ServicerContext) -> pb.AnnotatorCredentials:
        await self.gw.caller(context, Role.ADMIN)
        if not request.annotator_id or len(request.annotator_id) > 128 or request.annotator_id == "admin":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "annotator_id must be 1..128 characters, not 'admin'")
        try:
            role = Role(request.role or "annotator")
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown role {request.role!r}")
        projects = sorted(set(request.projects))
        if role is not Role.ADMIN and not projects:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"projects: name the projects the annotator works in, or {ALL_PROJECTS!r} for all")
        if len(projects) > MEMBERSHIPS_MAX or any(not p or len(p) > ID_MAX for p in projects):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"projects: at most {MEMBERSHIPS_MAX} names of 1..{ID_MAX} characters")
        if request.expires_unix_ms and request.expires_unix_ms <= self.gw.clock() * 1000:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expires_unix_ms is in the past")
        token = new_token()
        annotators = self.gw.db["annotators"]
        # Re-issuing credentials replaces the token, role and projects, never the record: a suspension qc decided
        # stays until qc lifts it ($setOnInsert), whoever calls CreateAnnotator again.
        await annotators.update_one(
            {"_id": request.annotator_id},
            {"$set": {"role": role.value, "token_sha256": hash_token(token), "projects": projects, "revoked": False,
                      "expires_unix_ms": request.expires_unix_ms or None},
             "$setOnInsert": {"created_at": utcnow(), "suspended": False}},
            upsert=True,
        )
        self.gw.tokens.forget_where(lambda doc: doc["_id"] == request.annotator_id)  # an old token ends here now
        return pb.AnnotatorCredentials(annotator_id=request.annotator_id, role=role.value, token=token)

    async def GetItemHistory(self, request: pb.GetItemHistoryRequest, context: grpc.aio.ServicerContext) -> pb.ItemHistory:
        await self.gw.caller(context, Role.ADMIN)
        await self.gw.project(context, request.project)
        if not request.item_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "item_id is required")
        key = f"{request.project}/{request.item_id}"
        if await self.gw.db["items"].find_one({"_id": key}) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown item {request.item_id!r}")
        entries = [
            pb.HistoryEntry(kind=d["kind"], at_unix_ms=int(d["at"].timestamp() * 1000), detail_json=d["detail"])
            async for d in self.gw.db["history"].find({"project": request.project, "item_id": request.item_id},
                                                      sort=[("at", 1)])
        ]
        return pb.ItemHistory(project=request.project, item_id=request.item_id, entries=entries)

    async def CreateCalibrationSession(self, request: pb.CreateCalibrationSessionRequest,
                                       context: grpc.aio.ServicerContext) -> pb.CalibrationSession:
        await self.gw.caller(context, Role.ADMIN)
        await self.gw.project(context, request.project)
        db = self.gw.db
        asked = {"item_ids": list(request.item_ids), "n": request.n, "annotators": list(request.annotators)}
        try:
            check_item_request(asked["item_ids"], request.n)
            session = session_id(request.session_id)
        except CalibrationError as exc:
            await context.abort(CALIBRATION_STATUS[exc.code], str(exc))
        existing = await db["calibration_sessions"].find_one({"_id": session})
        if existing is not None:
            if existing["project"] != request.project or existing["request"] != asked:
                await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"session {session!r} exists with other settings")
            return _session_message(existing)
        golden = set()
        if asked["item_ids"]:
            keys = [f"{request.project}/{i}" for i in asked["item_ids"]]
            found = {d["item_id"]: d for d in await find_by_ids(db["items"], keys, {"item_id": 1, "golden_label": 1})}
            missing = [i for i in asked["item_ids"] if i not in found]
            if missing:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown items: {', '.join(missing[:20])}")
            golden = {i for i, d in found.items() if d.get("golden_label")}
        if golden:
            # Annotators would meet these again as golden tasks, knowing them: their answers must stay unseen.
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"golden items cannot be calibration items: {', '.join(sorted(golden)[:20])}")
        known = {d["_id"]: Annotator(d["_id"], d["role"], bool(d.get("suspended")))
                 async for d in db["annotators"].find({}, {"role": 1, "suspended": 1})}
        try:
            if asked["item_ids"]:
                items = tuple(asked["item_ids"])
            else:
                candidates = [d["item_id"] async for d in db["items"].find(
                    {"project": request.project}, {"item_id": 1, "golden_label": 1}) if not d.get("golden_label")]
                items = pick_items(candidates, request.n, seed=session)
            annotators = pick_annotators(known, asked["annotators"])
        except CalibrationError as exc:
            await context.abort(CALIBRATION_STATUS[exc.code], str(exc))
        # Tasks first, then the session: a retry after a crash in between recreates the same session and
        # insert_new keeps the tasks already there.
        await self.gw.queue.add_calibration(session, request.project, list(items), list(annotators))
        doc = {"_id": session, "project": request.project, "item_ids": list(items), "annotators": list(annotators),
               "request": asked, "created_at": utcnow()}
        try:
            await db["calibration_sessions"].insert_one(doc)
        except DuplicateKeyError:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"session {session!r} was created concurrently")
        await self.gw.histories([
            history_entry(request.project, item, "calibration", {"session": session, "annotators": list(annotators)},
                          f"calibration/{session}/{item}") for item in items
        ])
        return _session_message(doc)


def _session_message(doc: dict[str, Any]) -> pb.CalibrationSession:
    return pb.CalibrationSession(session_id=doc["_id"], project=doc["project"], item_ids=doc["item_ids"],
                                 annotators=doc["annotators"])
