"""What the gateway's gRPC servicers share: its stores and caches, and the checks every call makes (who calls,
in which project), with the gRPC status each refusal of the rules (services/gateway/domain/) is sent as."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from labelmesh.runtime.outbox import Outbox
from labelmesh.runtime.service import ServiceRuntime
from schemas.events import Envelope
from services.gateway.auth import ALL_PROJECTS, Caller, Role, bearer, hash_token, same_secret, token_expired
from services.gateway.domain.refusals import Refused
from services.gateway.limits import RateLimiter
from services.gateway.queue import TaskQueue
from services.gateway.recent import Recent
from services.gateway.settings import GatewaySettings
from services.gateway.store.annotators import AnnotatorStore
from services.gateway.store.history import HistoryStore
from services.gateway.store.items import ItemStore
from services.gateway.store.projects import ProjectStore
from services.gateway.store.served import ServedCounter
from services.gateway.store.sessions import SessionStore
from services.gateway.store.submissions import SubmissionStore

STATUS = {"invalid": grpc.StatusCode.INVALID_ARGUMENT, "not_found": grpc.StatusCode.NOT_FOUND,
          "precondition": grpc.StatusCode.FAILED_PRECONDITION, "forbidden": grpc.StatusCode.PERMISSION_DENIED,
          "exists": grpc.StatusCode.ALREADY_EXISTS, "exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED}


def field_status(code: grpc.StatusCode, message: str, fields: Sequence[tuple[str, str]]) -> grpc.Status:
    """A status with a google.rpc BadRequest detail listing each (field, why)."""
    detail = error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=field, description=why) for field, why in fields])
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.add().Pack(detail)
    return rpc_status.to_status(status)


async def refuse(context: grpc.aio.ServicerContext, refused: Refused) -> None:
    """End the call (context.abort raises) with the status of the refusal's kind and its message, and a BadRequest
    detail naming the fields where the refusal names them."""
    if refused.fields:
        await context.abort_with_status(field_status(STATUS[refused.code], str(refused), refused.fields))
    await context.abort(STATUS[refused.code], str(refused))


class Gateway:
    """State shared by the gRPC services: settings, stores, the task queue, the outbox and what this replica
    read recently."""

    def __init__(self, rt: ServiceRuntime, settings: GatewaySettings) -> None:
        self.rt = rt
        self.settings = settings
        self.db = rt.db
        self.queue = TaskQueue(rt.db, settings.lease_seconds, settings.lease_grace_seconds)
        self.annotators = AnnotatorStore(rt.db)
        self.projects = ProjectStore(rt.db)
        self.items = ItemStore(rt.db)
        self.submissions = SubmissionStore(rt.db)
        self.history = HistoryStore(rt.db)
        self.served = ServedCounter(rt.db)
        self.sessions = SessionStore(rt.db)
        # Annotator documents by token hash and projects, as this replica read them within RECENT_SECONDS.
        self.known_tokens = Recent()
        self.known_projects = Recent()
        self.limits = RateLimiter(settings.rate_limits())
        self.clock = time.time  # wall-clock seconds, for token expiry; a test may replace it
        # Read at each call, not bound here: what the bus publishes with may be wrapped after wiring (tests do).
        self.outbox = Outbox(rt.db, self.publish, claim_s=settings.relay_claim_s)

    async def publish(self, events: Sequence[Envelope]) -> None:
        await self.rt.bus.publish(list(events))

    async def ensure_indexes(self) -> None:
        await self.annotators.ensure_indexes()
        await self.queue.ensure_indexes()

    def forget_annotator(self, annotator_id: str) -> None:
        """This replica stops trusting what it read of the annotator's token at once."""
        self.known_tokens.forget_where(lambda doc: doc["_id"] == annotator_id)

    async def caller(self, context: grpc.aio.ServicerContext, *roles: Role) -> Caller:
        token = bearer(context.invocation_metadata())
        if token is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing 'authorization: Bearer <token>' metadata")
        if same_secret(token, self.settings.admin_token.get_secret_value()):
            caller = Caller("admin", Role.ADMIN)
        else:
            digest = hash_token(token)
            doc = await self.known_tokens.get(digest, lambda: self.annotators.by_token(digest))
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

    async def member(self, context: grpc.aio.ServicerContext, caller: Caller, project: str) -> None:
        """Abort unless the caller works in the project; the same answer whether the project exists or not."""
        if not caller.member_of(project):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"annotator {caller.annotator_id} is not a member of project {project!r}")

    async def project(self, context: grpc.aio.ServicerContext, project: str, recent: bool = False) -> dict[str, Any]:
        """The project's document; with `recent`, as this replica read it within RECENT_SECONDS (read-only use)."""
        if not project:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "project is required")
        doc = await (self.known_projects.get(project, lambda: self.projects.get(project)) if recent
                     else self.projects.get(project))
        if doc is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown project {project!r}")
        return doc
