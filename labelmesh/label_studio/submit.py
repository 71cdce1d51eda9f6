"""One Label Studio annotation into labelmesh, the same way whether the webhook brought it or the sync found it.

The annotation and its task are Label Studio's own records (read back from its API, never a webhook's payload, so
a forged POST cannot submit a label). Its Label Studio user must map to the annotator holding the labelmesh lease;
then it becomes SubmitLabel with that annotator's token and the idempotency key of the annotation id, and the
ledger records it: the sync submits only annotations the ledger does not hold, and a redelivery that reaches the
gateway anyway is answered as a duplicate there. A skipped annotation (was_cancelled) becomes SkipTask. An update
that changes an already submitted label cannot replace it (labelmesh keeps every submission); it becomes FlagItem
with both labels, for review, once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import grpc

from labelmesh.client import GatewayClient
from labelmesh.label_studio import mapping
from labelmesh.label_studio.config import BridgeConfig
from labelmesh.label_studio.ledger import Ledger, Submitted

log = logging.getLogger(__name__)
GRPC_TO_HTTP = {grpc.StatusCode.INVALID_ARGUMENT: 422, grpc.StatusCode.NOT_FOUND: 404,
                grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.UNAUTHENTICATED: 403,
                grpc.StatusCode.FAILED_PRECONDITION: 409, grpc.StatusCode.ALREADY_EXISTS: 409}


@dataclass(frozen=True)
class Outcome:
    """What became of one annotation: status is submitted, duplicate, skipped, flagged or refused."""

    status: str
    code: int = 200
    detail: dict[str, Any] = field(default_factory=dict)


def refused(code: int, message: str) -> Outcome:
    log.warning("annotation refused (%d): %s", code, message)
    return Outcome("refused", code, {"message": message})


class Submitter:
    def __init__(self, config: BridgeConfig, channel: grpc.aio.Channel, ledger: Ledger) -> None:
        self.config = config
        self.ledger = ledger
        self.clients = {u.annotator: GatewayClient(config.gateway, u.token, channel) for u in config.users}

    async def annotation(self, stored: dict[str, Any], task: dict[str, Any]) -> Outcome:
        """Submit (or skip, or flag) one annotation as Label Studio holds it, with the task it belongs to."""
        try:
            return await self._annotation(stored, task)
        except mapping.BadAnnotation as exc:
            return refused(422, str(exc))
        except grpc.aio.AioRpcError as exc:
            return refused(GRPC_TO_HTTP.get(exc.code(), 502), f"labelmesh: {exc.code().name}: {exc.details()}")

    async def _annotation(self, stored: dict[str, Any], task: dict[str, Any]) -> Outcome:
        ann = mapping.annotation({"annotation": stored, "task": task})
        if ann.project != self.config.project:
            return refused(422, f"task is for labelmesh project {ann.project!r}, this bridge serves "
                                f"{self.config.project!r}")
        user = self.config.by_ls_user(ann.ls_user_id)
        if user is None:
            return refused(403, f"Label Studio user {ann.ls_user_id} is not mapped to a labelmesh annotator "
                                "(labelmesh label-studio map-user)")
        if user.annotator != ann.annotator:
            return refused(403, f"task {ann.task_id} is leased to {ann.annotator!r}; Label Studio user "
                                f"{user.email} labels as {user.annotator!r}")
        client = self.clients[user.annotator]
        earlier = self.ledger.get(ann.annotation_id)
        if ann.cancelled:
            if earlier is not None:
                return Outcome("duplicate", detail={"task_id": ann.task_id})
            await client.skip(ann.task_id, reason="skipped in Label Studio")
            self.ledger.record(Submitted(ann.annotation_id, ann.project, ann.item_id, ann.task_id, user.annotator,
                                         "", "", False))
            return Outcome("skipped", detail={"task_id": ann.task_id})
        if earlier is not None:
            if earlier.label != ann.label:
                return await self._changed(client, ann, earlier)
            return Outcome("duplicate", detail={"submission_id": earlier.submission_id, "duplicate": True})
        key = mapping.idempotency_key(ann.annotation_id)
        response = await client.submit(ann.task_id, ann.label, key=key, time_spent_ms=ann.time_spent_ms)
        self.ledger.record(Submitted(ann.annotation_id, ann.project, ann.item_id, ann.task_id, user.annotator,
                                     ann.label, response.submission_id, False))
        return Outcome("duplicate" if response.duplicate else "submitted",
                       detail={"submission_id": response.submission_id, "duplicate": response.duplicate})

    async def _changed(self, client: GatewayClient, ann: mapping.Annotation, earlier: Submitted) -> Outcome:
        comment = (f"changed in Label Studio from {earlier.label!r} to {ann.label!r} after submission "
                   f"(annotation {ann.annotation_id}); labelmesh keeps {earlier.label!r}")
        if not self.ledger.mark_changed(ann.annotation_id, ann.label):
            return Outcome("duplicate", detail={"message": comment})  # already flagged for this label
        flag = await client.flag(ann.project, comment[:2000], item_id=ann.item_id)
        return Outcome("flagged", 409, {"flag_id": flag, "message": comment})
