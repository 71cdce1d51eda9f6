"""The sync: Label Studio tasks only for what labelmesh routes to people, and their annotations back into labelmesh.

Each run first reads the Label Studio project's tasks and submits every annotation the ledger does not hold yet
(labelmesh.label_studio.submit: the same path as the backend's webhook, so a label made while the backend was down
or its webhook lost still arrives, and re-running the sync submits nothing twice). Then, for each mapped annotator,
it leases tasks over gRPC (LeaseTask, with that annotator's token, so the gateway's queue decides what they get:
its priority order, golden items, expert tiers for experts) and imports each as a Label Studio task with
labelmesh's pre-label as a prediction. Auto-accepted items are never leased, so they never appear in Label Studio.
A lease lasts the gateway's lease time (LABELMESH_GATEWAY_LEASE_SECONDS); an annotation for an expired lease is
refused by the gateway and the sync or the webhook says so.

A task nobody answered before its lease expired is deleted from Label Studio (an annotation would be refused; the
gateway offers the item again, and a later sync creates its new lease).

The gateway gives an annotator one lease at a time (LeaseTask returns their current lease again until they
submit or skip it), so one sync run adds at most one task per annotator whose last task was answered; run it
with --follow to keep Label Studio fed. A lease already in the Label Studio project is not created twice.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from labelmesh.client import GatewayClient
from labelmesh.label_studio import mapping
from labelmesh.label_studio.api import LabelStudio
from labelmesh.label_studio.config import BridgeConfig
from labelmesh.label_studio.ledger import Ledger
from labelmesh.label_studio.submit import Submitter

IMPORT_BATCH = 100


@dataclass
class SyncReport:
    created: dict[str, int] = field(default_factory=dict)
    ls_task_ids: list[int] = field(default_factory=list)
    annotations: Counter[str] = field(default_factory=Counter)
    refusals: list[str] = field(default_factory=list)
    expired: int = 0

    @property
    def total(self) -> int:
        return sum(self.created.values())


def _now_ms() -> int:
    return int(time.time() * 1000)


def expired(task: dict[str, Any], now_ms: int) -> bool:
    """A task created by the sync whose lease ran out before anyone annotated it."""
    expires = (task.get("data") or {}).get("labelmesh_lease_expires_unix_ms")
    return not task.get("annotations") and isinstance(expires, int) and 0 < expires < now_ms


async def sync(config: BridgeConfig, ls: LabelStudio, per_annotator: int,
               now_ms: Callable[[], int] = _now_ms) -> SyncReport:
    """Submit the annotations not yet in labelmesh, delete the tasks whose lease expired unanswered, then lease up
    to `per_annotator` tasks for each mapped annotator and create them in Label Studio."""
    ca = config.ca_bytes()
    channel = (grpc.aio.secure_channel(config.gateway, grpc.ssl_channel_credentials(ca)) if ca
               else grpc.aio.insecure_channel(config.gateway))
    ledger = Ledger(config.ledger)
    report = SyncReport()
    try:
        tasks = await ls.tasks(config.ls_project_id)
        submitter = Submitter(config, channel, ledger)
        for task in tasks:
            for annotation in task.get("annotations") or []:
                if not isinstance(annotation.get("id"), int) or ledger.get(annotation["id"]) is not None:
                    continue  # submitted (or skipped) already, by the webhook or an earlier sync
                outcome = await submitter.annotation(annotation, task)
                report.annotations[outcome.status] += 1
                if outcome.status == "refused":
                    report.refusals.append(f"annotation {annotation['id']}: {outcome.detail.get('message')}")
        now = now_ms()
        for task in [t for t in tasks if expired(t, now)]:
            await ls.delete_task(task["id"])
            report.expired += 1
        present = {str((t.get("data") or {}).get("labelmesh_task_id")) for t in tasks if not expired(t, now)}
        for user in config.users:
            client = GatewayClient(config.gateway, user.token, channel)
            rows = []
            while len(rows) < per_annotator and (leased := await client.lease(config.project)) is not None:
                if leased.task_id in present:
                    break  # their current lease, already in Label Studio: nothing new until it is answered
                present.add(leased.task_id)
                rows.append(mapping.import_row(leased, user.annotator))
            for start in range(0, len(rows), IMPORT_BATCH):
                answer = await ls.import_tasks(config.ls_project_id, rows[start:start + IMPORT_BATCH])
                report.ls_task_ids += list(answer.get("task_ids") or [])
            report.created[user.annotator] = len(rows)
    finally:
        ledger.close()
        await channel.close()
    return report
