"""AnnotationService: annotators lease tasks, submit labels, skip tasks, flag items and read guidelines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from labelmesh.runtime.outbox import record
from schemas.events import LabelSubmitted
from schemas.spans import Span, SpanError, TaskType, answer_key
from schemas.rpc import gateway_pb2 as pb
from schemas.rpc import gateway_pb2_grpc as pb_grpc
from services.gateway.api import Gateway, refuse
from services.gateway.auth import Caller, Role
from services.gateway.coalesce import Coalescer
from services.gateway.domain.feedback import check_comment, feedback_flag
from services.gateway.domain.projects import task_of, wants_current
from services.gateway.domain.refusals import Refused
from services.gateway.domain.submissions import (
    check_answer_kind,
    check_holder,
    check_retry,
    check_skip_reason,
    check_submission,
    check_task_id,
    submission_id,
    submitted,
)
from services.gateway.domain.golden import golden_turn
from services.gateway.queue import Lease, LeaseError
from services.gateway.spans import raw_spans, spans_from_proto, spans_to_proto
from services.gateway.store import history
from services.gateway.store.submissions import event_of, submission_doc


def task_message(lease: Lease, project: dict[str, Any]) -> pb.Task:
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
        spans=spans_to_proto(task.get("spans") or (), pb.Span),
        task_type=task_of(project).value,
    )


class AnnotationServicer(pb_grpc.AnnotationServiceServicer):
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._submissions = Coalescer(self._store_submissions)
        self._outbox_adds: Coalescer[dict[str, Any], None] = Coalescer(self._add_records)

    async def LeaseTask(self, request: pb.LeaseTaskRequest, context: grpc.aio.ServicerContext) -> pb.Task:
        caller = await self.gw.caller(context, Role.ANNOTATOR, Role.EXPERT)
        await self.gw.limits.check(context, "lease", caller.annotator_id)
        await self.gw.member(context, caller, request.project)
        project = await self.gw.project(context, request.project, recent=True)
        settings = self.gw.settings
        served, golden = None, False
        # Whose turn it is matters only where a golden task could be served: with no golden pool in this
        # replica's index (claim_golden's own source) or a rate of 0, the counter is only counted (one read less).
        if self.gw.queue.hints.golden(request.project) and (settings.golden_rate or settings.golden_settled_rate):
            served = await self.gw.served.of(caller.annotator_id)
            golden = golden_turn(caller.annotator_id, served, settings.golden_rate, settings.golden_settled_rate,
                                 settings.golden_warmup_tasks, settings.golden_salt.get_secret_value())
        lease = await self.gw.queue.next_lease(request.project, caller.annotator_id, caller.role, golden,
                                               project["guideline_version"])
        if lease is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no task is waiting for you in this project")
        if lease.fresh:
            await self.gw.served.count(caller.annotator_id, served)
        lease.task["text"] = await self.gw.queue.text_of(lease.task)
        return task_message(lease, project)

    async def _lease_of(self, context: grpc.aio.ServicerContext, caller: Caller, task_id: str) -> dict[str, Any]:
        try:
            check_task_id(task_id)
            lease = await self.gw.queue.get_lease(task_id)
            if lease is None:
                raise Refused("not_found", f"unknown task {task_id!r}")
            check_holder(lease, caller.annotator_id)
        except Refused as refused:
            await refuse(context, refused)
        return lease

    async def SubmitLabel(self, request: pb.SubmitLabelRequest, context: grpc.aio.ServicerContext) -> pb.SubmitLabelResponse:
        caller = await self.gw.caller(context, Role.ANNOTATOR, Role.EXPERT)
        try:
            check_submission(request.idempotency_key, request.time_spent_ms)
            sub_id = submission_id(caller.annotator_id, request.idempotency_key)
            previous = await self.gw.submissions.get(sub_id)
            if previous is not None:
                check_retry(previous, request.task_id, request.label, answer_key(raw_spans(request.spans)))
        except Refused as refused:
            await refuse(context, refused)
        except SpanError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"spans: {exc}")
        if previous is not None:
            await self._publish(previous)  # a retry after a failed publish completes it
            return pb.SubmitLabelResponse(submission_id=sub_id, duplicate=True)
        lease = await self._lease_of(context, caller, request.task_id)
        project = await self.gw.project(context, lease["project"], recent=True)
        spans = await self._spans(context, request, lease, project)
        try:
            event = submitted(sub_id, lease, caller.annotator_id, caller.role, request.label, request.time_spent_ms,
                              request.idempotency_key, project["labels"], project["guideline_version"], spans)
        except Refused as refused:
            await refuse(context, refused)
        doc = submission_doc(sub_id, request.task_id, request.label, event)
        entry = history.submitted(event)
        # Written down before the lease is finished: a gateway that dies anywhere after this leaves the submission
        # to the relay, which finishes what this call did not (relay.py).
        await self._outbox_adds(record(event, "submission", doc=doc, history=entry))
        try:
            await self.gw.queue.finish(lease, "submitted", submission=sub_id)
        except LeaseError as exc:
            # No call with this submission can finish the lease now (the same submission again would go through),
            # so nothing is left to relay: a refused call writes nothing.
            await self.gw.outbox.done([event.event_id])
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        stored = await self._submissions((doc, event, entry))
        return pb.SubmitLabelResponse(submission_id=sub_id, duplicate=not stored)

    async def _spans(self, context: grpc.aio.ServicerContext, request: pb.SubmitLabelRequest, lease: dict[str, Any],
                     project: dict[str, Any]) -> tuple[Span, ...] | None:
        """A spans project's answer checked against the item's text and entity types; None on a classification
        project, which refuses spans."""
        task = task_of(project)
        try:
            check_answer_kind(task, request.label, len(request.spans))
            if task is not TaskType.SPANS:
                return None
            item = await self.gw.items.get(lease["project"], lease["item_id"])
            return spans_from_proto(request.spans, (item or {}).get("text", ""), project["labels"])
        except Refused as refused:
            await refuse(context, refused)
        except SpanError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"spans: {exc}")
        return None

    async def _add_records(self, records: Sequence[dict[str, Any]]) -> list[None]:
        await self.gw.outbox.add(records)
        return [None] * len(records)

    async def _store_submissions(self, batch: Sequence[tuple[dict[str, Any], LabelSubmitted, dict[str, Any]]]
                                 ) -> list[bool]:
        """Store, publish, mark published and record the history of concurrent submissions, one command (and one
        publish) per step for the batch (services/gateway/coalesce.py); whether each was new (a duplicate `_id`
        is a retry or a concurrent twin, answered duplicate=True as before)."""
        existed = set(await self.gw.submissions.insert_new([doc for doc, _, _ in batch]))
        new = [entry for n, entry in enumerate(batch) if n not in existed]
        if new:
            await self.gw.publish([event for _, event, _ in new])
            await self.gw.submissions.mark_published([doc["_id"] for doc, _, _ in new])
            await self.gw.history.add([entry for _, _, entry in new])
            await self.gw.outbox.done([event.event_id for _, event, _ in new])
        return [n not in existed for n in range(len(batch))]

    async def _publish(self, submission: dict[str, Any]) -> None:
        """Outbox step: publish the stored submission, then mark it published."""
        if submission.get("published"):
            return
        event = event_of(submission)
        await self.gw.publish([event])
        await self.gw.submissions.mark_published([submission["_id"]])
        await self.gw.outbox.done([event.event_id])

    async def SkipTask(self, request: pb.SkipTaskRequest, context: grpc.aio.ServicerContext) -> pb.SkipTaskResponse:
        caller = await self.gw.caller(context, Role.ANNOTATOR, Role.EXPERT)
        try:
            check_skip_reason(request.reason)
        except Refused as refused:
            await refuse(context, refused)
        lease = await self._lease_of(context, caller, request.task_id)
        try:
            await self.gw.queue.finish(lease, "skipped")
        except LeaseError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        await self.gw.history.add([history.skipped(lease, caller.annotator_id, request.reason)])
        return pb.SkipTaskResponse()

    async def FlagItem(self, request: pb.FlagItemRequest, context: grpc.aio.ServicerContext) -> pb.FlagItemResponse:
        caller = await self.gw.caller(context)
        await self.gw.limits.check(context, "flag", caller.annotator_id)
        await self.gw.member(context, caller, request.project)
        await self.gw.project(context, request.project)
        try:
            check_comment(request.comment)
        except Refused as refused:
            await refuse(context, refused)
        if request.item_id and caller.role is not Role.ADMIN:
            # An annotator flags only what they were shown: an item they hold or held a lease for. Any other id,
            # existing or not, gets the same answer, so flags cannot probe which items exist.
            if not await self.gw.queue.has_leased(request.project, request.item_id, caller.annotator_id):
                await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                    f"you hold no lease, and held none, on item {request.item_id!r}")
        elif request.item_id and await self.gw.items.get(request.project, request.item_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown item {request.item_id!r}")
        flag = feedback_flag(request.project, request.item_id, request.comment, caller.annotator_id)
        await self.gw.publish([flag])
        return pb.FlagItemResponse(flag_id=flag.event_id)

    async def GetGuidelines(self, request: pb.GetGuidelinesRequest, context: grpc.aio.ServicerContext) -> pb.Guidelines:
        await self.gw.caller(context)
        project = await self.gw.project(context, request.project)
        try:
            current = wants_current(request.version, project["guideline_version"])
        except Refused as refused:
            await refuse(context, refused)
        if current:
            return pb.Guidelines(project=request.project, version=project["guideline_version"],
                                 text=project["guidelines"], labels=project["labels"])
        doc = await self.gw.projects.guideline_version(request.project, request.version)
        if doc is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"project {request.project!r} has no guideline version "
                                                           f"{request.version}")
        return pb.Guidelines(project=request.project, version=doc["version"], text=doc["text"], labels=doc["labels"])
