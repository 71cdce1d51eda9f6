"""AdminService: projects and their guidelines, annotators' credentials, item histories, calibration sessions."""

from __future__ import annotations

from typing import Any

import grpc

from labelmesh.runtime.outbox import record
from schemas.events import ProjectConfigured
from schemas.rpc import gateway_pb2 as pb
from schemas.rpc import gateway_pb2_grpc as pb_grpc
from services.gateway.api import Gateway, refuse
from services.gateway.auth import Role, hash_token, new_token
from services.gateway.domain.calibration import (
    check_existing,
    check_item_request,
    check_named_items,
    pick_annotators,
    pick_items,
    session_id,
)
from services.gateway.domain.annotators import credentials
from services.gateway.domain.bounds import check_fit
from services.gateway.domain.projects import check_guidelines, configured, republished
from services.gateway.domain.refusals import Refused
from services.gateway.store import history
from services.gateway.store.sessions import session_doc


def session_message(doc: dict[str, Any]) -> pb.CalibrationSession:
    return pb.CalibrationSession(session_id=doc["_id"], project=doc["project"], item_ids=doc["item_ids"],
                                 annotators=doc["annotators"])


class AdminServicer(pb_grpc.AdminServiceServicer):
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def ConfigureProject(self, request: pb.ConfigureProjectRequest, context: grpc.aio.ServicerContext) -> pb.Project:
        await self.gw.caller(context, Role.ADMIN)
        labels = list(request.labels)
        current = await self.gw.projects.get(request.project)
        try:
            event = configured(request.project, labels, request.guidelines, request.multi_annotators,
                               request.target_auto_error, current, request.task_type)
            check_fit([event], "project")
        except Refused as refused:
            await refuse(context, refused)
        await self._store(event)
        return pb.Project(project=request.project, labels=labels, guideline_version=event.guideline_version,
                          task_type=event.task.value)

    async def _store(self, event: ProjectConfigured) -> None:
        """The project as configured, its guideline version kept for good, then project.configured.

        The event goes to the outbox first and the project names it (event_id): the relay publishes a record only
        while its project still holds that configuration (relay.py)."""
        await self.gw.outbox.add([record(event, "project")])
        await self.gw.projects.replace(event)
        await self.gw.projects.keep_guideline_version(event)
        self.gw.known_projects.forget(event.project)
        await self.gw.publish([event])
        await self.gw.outbox.done([event.event_id])

    async def PublishGuidelines(self, request: pb.PublishGuidelinesRequest,
                                context: grpc.aio.ServicerContext) -> pb.Guidelines:
        await self.gw.caller(context, Role.ADMIN)
        try:
            check_guidelines(request.text)
        except Refused as refused:
            await refuse(context, refused)
        current = await self.gw.project(context, request.project)
        event = republished(request.project, current, request.text)  # None: the same text again (a retry)
        if event is not None:
            try:
                check_fit([event], "guidelines")
            except Refused as refused:
                await refuse(context, refused)
            await self._store(event)
        version = current["guideline_version"] if event is None else event.guideline_version
        return pb.Guidelines(project=request.project, version=version, text=request.text, labels=current["labels"])

    async def CreateAnnotator(self, request: pb.CreateAnnotatorRequest, context: grpc.aio.ServicerContext) -> pb.AnnotatorCredentials:
        await self.gw.caller(context, Role.ADMIN)
        try:
            role, projects = credentials(request.annotator_id, request.role, list(request.projects),
                                         request.expires_unix_ms, self.gw.clock() * 1000)
        except Refused as refused:
            await refuse(context, refused)
        token = new_token()
        await self.gw.annotators.issue(request.annotator_id, role, projects, hash_token(token),
                                       request.expires_unix_ms or None)
        self.gw.forget_annotator(request.annotator_id)  # an old token ends here now
        return pb.AnnotatorCredentials(annotator_id=request.annotator_id, role=role.value, token=token)

    async def GetItemHistory(self, request: pb.GetItemHistoryRequest, context: grpc.aio.ServicerContext) -> pb.ItemHistory:
        await self.gw.caller(context, Role.ADMIN)
        await self.gw.project(context, request.project)
        if not request.item_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "item_id is required")
        if await self.gw.items.get(request.project, request.item_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown item {request.item_id!r}")
        entries = [pb.HistoryEntry(kind=d["kind"], at_unix_ms=int(d["at"].timestamp() * 1000), detail_json=d["detail"])
                   for d in await self.gw.history.of_item(request.project, request.item_id)]
        return pb.ItemHistory(project=request.project, item_id=request.item_id, entries=entries)

    async def CreateCalibrationSession(self, request: pb.CreateCalibrationSessionRequest,
                                       context: grpc.aio.ServicerContext) -> pb.CalibrationSession:
        await self.gw.caller(context, Role.ADMIN)
        await self.gw.project(context, request.project)
        asked = {"item_ids": list(request.item_ids), "n": request.n, "annotators": list(request.annotators)}
        try:
            check_item_request(asked["item_ids"], request.n)
            session = session_id(request.session_id)
            existing = await self.gw.sessions.get(session)
            if existing is not None:
                check_existing(existing, request.project, asked)
                return session_message(existing)
            if asked["item_ids"]:
                check_named_items(asked["item_ids"], await self.gw.items.golden_of(request.project, asked["item_ids"]))
            known = await self.gw.annotators.known()
            items = tuple(asked["item_ids"]) if asked["item_ids"] else pick_items(
                await self.gw.items.ordinary_ids(request.project), request.n, seed=session)
            annotators = pick_annotators(known, asked["annotators"])
        except Refused as refused:
            await refuse(context, refused)
        # Tasks first, then the session: a retry after a crash in between recreates the same session and
        # insert_new keeps the tasks already there.
        await self.gw.queue.add_calibration(session, request.project, list(items), list(annotators))
        doc = session_doc(session, request.project, items, annotators, asked)
        if not await self.gw.sessions.insert(doc):
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"session {session!r} was created concurrently")
        await self.gw.history.add([history.calibration(request.project, item, session, annotators) for item in items])
        return session_message(doc)
