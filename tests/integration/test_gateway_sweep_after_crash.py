"""A gateway that dies between finishing a lease and giving up its slot: the sweeper must not free the slot
of a label that stands (found by bench/crash_recovery.py's client that never retries, issue 21), nor the item
marker of a skip that stands."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc
import pytest
from pymongo.errors import ConnectionFailure

from labelmesh.client import GatewayClient
from labelmesh.runtime.service import ServiceRuntime
from schemas.events import Tier, derived_id, utcnow
from schemas.rpc import gateway_pb2 as pb
from services.gateway.app import create_app
from services.gateway.queue import marker_id
from services.gateway.relay import GatewayRelay
from services.gateway.settings import GatewaySettings
from tests.conftest import eventually
from tests.gateway_helpers import ADMIN, LABELS, PROJECT, routed, status_of
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration


def _gateway(env: Env) -> ServiceRuntime:
    # Sweeps and relay passes only when the test makes them (after it has moved the lease past its expiry).
    return create_app(env.settings(GatewaySettings, grpc_port=0, admin_token=ADMIN, golden_rate=0.0,
                                   golden_settled_rate=0.0, sweep_seconds=3600.0, relay_seconds=3600.0,
                                   relay_after_s=0.0))


async def test_a_label_whose_gateway_died_before_giving_up_the_slot_keeps_it_through_the_sweep(env: Env) -> None:
    runtime = _gateway(env)
    await runtime.start()
    admin = GatewayClient(f"127.0.0.1:{runtime.component.port}", ADMIN)
    try:
        await admin.configure_project(PROJECT, LABELS, guidelines="v1")
        first = admin.as_user(await admin.create_annotator("ann", projects=[PROJECT]))
        other = admin.as_user(await admin.create_annotator("other", projects=[PROJECT]))  # same channel
        await admin.ingest_items([pb.IngestItem(project=PROJECT, item_id="i-1", text="one slot, one answer")])
        await env.publish_events([routed("i-1", Tier.SINGLE, 1)])
        queue = runtime.component.gw.queue

        async def queued() -> bool:
            return await runtime.db["tasks"].count_documents({"item_id": "i-1", "status": "open"}) >= 1

        await eventually(queued)
        task = await first.lease(PROJECT)
        assert task is not None

        async def dies(*args: Any, **kwargs: Any) -> None:
            raise ConnectionFailure("simulated: gone after finishing the lease, before giving up its slot")

        releases, queue._releases = queue._releases, dies  # type: ignore[assignment]
        # The client never retries: it is told the call failed and moves on.
        assert await status_of(first.submit(task.task_id, "yes", "k-1")) == grpc.StatusCode.UNAVAILABLE
        lease = await runtime.db["leases"].find_one({"_id": task.task_id})
        assert (lease["state"], lease["submission"]) == ("submitted", "ann/k-1")
        queue._releases = releases  # the process is "restarted": it gives up slots again

        # The lease's expiry and the sweeper's grace go by (the stored times moved back, as a clock would).
        past = utcnow() - timedelta(hours=1)
        await runtime.db["leases"].update_one({"_id": task.task_id}, {"$set": {"expires_at": past}})
        await runtime.db["active_leases"].update_many({}, {"$set": {"expires_at": past}})
        await queue.expire_leases()
        assert await other.lease(PROJECT) is None, "the task's one slot is answered: nobody else may take it"

        # The relay publishes the label that stands, once; the task is done.
        assert await GatewayRelay(runtime.component.gw).run_once() == 1
        labels = await env.read_all("label.submitted")
        assert [(r["event_id"], r["annotator_id"]) for r in labels] == [(derived_id("submitted", "ann/k-1"), "ann")]
        assert (await runtime.db["tasks"].find_one({"item_id": "i-1"}))["status"] == "done"
        assert await other.lease(PROJECT) is None
    finally:
        await admin.close()
        await runtime.stop()


async def test_a_skip_whose_gateway_died_before_giving_up_the_slot_keeps_the_skipper_off_the_task(env: Env) -> None:
    runtime = _gateway(env)
    await runtime.start()
    admin = GatewayClient(f"127.0.0.1:{runtime.component.port}", ADMIN)
    try:
        await admin.configure_project(PROJECT, LABELS, guidelines="v1")
        skipper = admin.as_user(await admin.create_annotator("skipper", projects=[PROJECT]))
        other = admin.as_user(await admin.create_annotator("other", projects=[PROJECT]))
        await admin.ingest_items([pb.IngestItem(project=PROJECT, item_id="i-1", text="skipped once, never again")])
        await env.publish_events([routed("i-1", Tier.SINGLE, 1)])
        queue = runtime.component.gw.queue

        async def queued() -> bool:
            return await runtime.db["tasks"].count_documents({"item_id": "i-1", "status": "open"}) >= 1

        await eventually(queued)
        task = await skipper.lease(PROJECT)
        assert task is not None

        async def dies(*args: Any, **kwargs: Any) -> None:
            raise ConnectionFailure("simulated: gone after finishing the lease, before giving up its slot")

        releases, queue._releases = queue._releases, dies  # type: ignore[assignment]
        assert await status_of(skipper.skip(task.task_id, "unclear")) == grpc.StatusCode.UNAVAILABLE
        lease = await runtime.db["leases"].find_one({"_id": task.task_id})
        assert lease["state"] == "skipped"
        queue._releases = releases  # "restarted"

        past = utcnow() - timedelta(hours=1)
        await runtime.db["leases"].update_one({"_id": task.task_id}, {"$set": {"expires_at": past}})
        await runtime.db["active_leases"].update_many({}, {"$set": {"expires_at": past}})
        await queue.expire_leases()

        # The skip stands: the skipper's item marker stays (a restarted replica's index knows only the database).
        marker = await runtime.db["claims"].find_one({"_id": marker_id(lease["task_id"], "skipper")})
        assert marker is not None, "the sweeper deleted the skipper's item marker"
        assert await skipper.lease(PROJECT) is None, "the annotator who skipped the task is offered it again"
        # ... and the slot the skip gave back is free for someone else.
        again = await other.lease(PROJECT)
        assert again is not None and again.item_id == "i-1"
    finally:
        await admin.close()
        await runtime.stop()
