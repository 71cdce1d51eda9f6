"""The gateway's outbox relay: a label or guideline version stored but never published reaches the topic once,
with no client retry, after a restart or while the gateway runs (issue 21, item 2)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import grpc
import pytest
from pymongo.errors import ConnectionFailure

from labelmesh.client import GatewayClient
from labelmesh.runtime.outbox import Outbox, record
from labelmesh.runtime.service import ServiceRuntime
from schemas.events import (
    Envelope,
    FlagKind,
    FlagSubject,
    ItemIngested,
    LabelSubmitted,
    ProjectConfigured,
    QcFlagged,
    Tier,
    derived_id,
)
from schemas.rpc import gateway_pb2 as pb
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from tests.conftest import eventually
from tests.gateway_helpers import ADMIN, LABELS, PROJECT, routed, status_of
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration


def _gateway(env: Env, **overrides: Any) -> ServiceRuntime:
    return create_app(env.settings(GatewaySettings, grpc_port=0, admin_token=ADMIN, golden_rate=0.0, **overrides))


def _publish_fails_for(runtime: ServiceRuntime, *kinds: type[Envelope], times: int = 1) -> list[int]:
    """The runtime's next `times` publishes holding one of `kinds` fail as if the process died there."""
    publish, failures = runtime.bus.publish, [0]

    async def publish_or_die(events: list[Envelope]) -> None:
        if failures[0] < times and any(isinstance(e, kinds) for e in events):
            failures[0] += 1
            raise ConnectionFailure("simulated: gone between storing and publishing")
        await publish(events)

    runtime.bus.publish = publish_or_die  # type: ignore[method-assign]
    return failures


async def _leased_task(env: Env, runtime: ServiceRuntime, admin: GatewayClient) -> tuple[GatewayClient, pb.Task, str]:
    token = await admin.create_annotator("ann", projects=[PROJECT])
    user = admin.as_user(token)
    await admin.ingest_items([pb.IngestItem(project=PROJECT, item_id="i-1", text="a label that must not be lost")])
    await env.publish_events([routed("i-1", Tier.SINGLE, 1)])

    async def queued() -> bool:
        return await runtime.db["tasks"].count_documents({"item_id": "i-1", "status": "open"}) >= 1

    await eventually(queued)
    task = await user.lease(PROJECT)
    assert task is not None
    return user, task, token


async def test_a_fresh_gateway_publishes_what_a_dead_one_stored_without_any_retry(env: Env) -> None:
    first = _gateway(env, relay_seconds=3600.0)  # its one pass runs at start, before anything is stored
    await first.start()
    admin = GatewayClient(f"127.0.0.1:{first.component.port}", ADMIN)
    try:
        await admin.configure_project(PROJECT, LABELS, guidelines="v1")
        user, task, _ = await _leased_task(env, first, admin)
        failures = _publish_fails_for(first, LabelSubmitted, ProjectConfigured, times=2)
        assert await status_of(user.submit(task.task_id, "yes", "k-1")) == grpc.StatusCode.UNAVAILABLE
        assert await status_of(admin.publish_guidelines(PROJECT, "v2")) == grpc.StatusCode.UNAVAILABLE
        assert failures == [2]
        stored = await first.db["submissions"].find_one({"_id": "ann/k-1"})
        assert stored is not None and stored["published"] is False
        assert (await first.db["projects"].find_one({"_id": PROJECT}))["guideline_version"] == 2
    finally:
        await admin.close()
        await first.stop()
    assert not await env.read_all("label.submitted"), "nothing was published before the restart"

    second = _gateway(env, relay_after_s=0.0, relay_seconds=3600.0)  # only the pass at start: no client, no retry
    await second.start()
    try:
        async def relayed() -> bool:
            return await second.db["outbox"].count_documents({}) == 0

        await eventually(relayed)
        labels = await env.read_all("label.submitted")
        assert [r["event_id"] for r in labels] == [derived_id("submitted", "ann/k-1")], "exactly once"
        assert (labels[0]["item_id"], labels[0]["label"]) == ("i-1", "yes")
        versions = [r["guideline_version"] for r in await env.read_all("project.configured")]
        assert sorted(versions) == [1, 2], "v2 announced once, after the restart"
        assert (await second.db["submissions"].find_one({"_id": "ann/k-1"}))["published"] is True
        assert await second.db["history"].count_documents({"kind": "label_submitted", "item_id": "i-1"}) == 1
        assert await second.db["outbox_claims"].count_documents({}) == 0
    finally:
        await second.stop()


async def test_a_running_gateway_publishes_a_label_whose_publish_failed(env: Env) -> None:
    runtime = _gateway(env, relay_after_s=0.0, relay_seconds=0.2)
    await runtime.start()
    admin = GatewayClient(f"127.0.0.1:{runtime.component.port}", ADMIN)
    try:
        await admin.configure_project(PROJECT, LABELS, guidelines="v1")
        user, task, _ = await _leased_task(env, runtime, admin)
        failures = _publish_fails_for(runtime, LabelSubmitted)
        assert await status_of(user.submit(task.task_id, "no", "k-2")) == grpc.StatusCode.UNAVAILABLE
        assert failures == [1]
        await env.read("label.submitted", lambda rs: len(rs) >= 1)  # no retry: the relay sends it

        async def relayed() -> bool:
            return await runtime.db["outbox"].count_documents({}) == 0

        await eventually(relayed)
        labels = await env.read_all("label.submitted")
        assert [(r["event_id"], r["label"]) for r in labels] == [(derived_id("submitted", "ann/k-2"), "no")]
    finally:
        await admin.close()
        await runtime.stop()


async def test_a_record_has_one_relay_at_a_time(env: Env) -> None:
    client = env.mongo()
    db = client[f"{env.namespace}_relay"]
    try:
        sent: list[str] = []

        async def publish(events: Any) -> None:
            await asyncio.sleep(0)  # let the other relay run between this relay's steps
            sent.extend(e.event_id for e in events)

        slot_s = 60.0
        start = datetime(2026, 12, 7, 12, 0, 30, tzinfo=timezone.utc)  # slot 0 of this clock + half a slot
        now = [start]
        relays = [Outbox(db, publish, claim_s=slot_s, per_claim=7, clock=lambda: now[0]) for _ in range(2)]
        flags = [QcFlagged(producer="test", project="p", subject=FlagSubject.GUIDELINES, subject_id="p",
                           kind=FlagKind.ANNOTATOR_FEEDBACK, message=f"m{n}") for n in range(30)]
        await relays[0].add([record(f, "flag", at=start - timedelta(seconds=5)) for f in flags])
        published = await asyncio.gather(*(r.relay(1.0, {}, {}) for r in (*relays, *relays)))
        assert sorted(sent) == sorted(f.event_id for f in flags), "each event published by exactly one relay"
        assert sum(published) == len(flags)
        assert await relays[0].pending() == 0

        # A relay that read the list before another one finished those records publishes none of them again.
        more = flags[:3]
        await relays[0].add([record(f, "flag", at=start - timedelta(seconds=5), n=2) for f in more])
        listed = [r async for r in relays[1].records.find({})]
        assert await relays[0].relay(1.0, {}, {}) == 3
        assert await relays[1]._relay_chunk(listed, {}, {}) == 0
        assert len(sent) == len(flags) + 3

        # Claims alone: a window that overlaps a held one is refused, one after it is granted.
        ids = ["a", "b"]
        slot = int(start.timestamp() // slot_s)
        assert await relays[0]._claim(ids, slot) == set(ids)
        assert await relays[1]._claim(ids, slot + 1) == set(), "slot+1 is still the first relay's"
        assert await relays[1]._claim(ids, slot - 1) == set(), "so is slot"
        assert await relays[1]._claim(ids, slot + 2) == set(ids), "a relay that died leaves them two slots later"
    finally:
        await client.drop_database(db.name)
        await client.close()


async def test_a_label_whose_gateway_died_before_finishing_the_lease_is_finished_and_published_by_the_relay(
        env: Env) -> None:
    first = _gateway(env, relay_seconds=3600.0)
    await first.start()
    admin = GatewayClient(f"127.0.0.1:{first.component.port}", ADMIN)
    try:
        await admin.configure_project(PROJECT, LABELS, guidelines="v1")
        user, task, token = await _leased_task(env, first, admin)
        queue = first.component.gw.queue

        async def dies(*args: Any, **kwargs: Any) -> None:
            raise ConnectionFailure("simulated: gone before finishing the lease")

        queue.finish = dies  # type: ignore[method-assign]
        assert await status_of(user.submit(task.task_id, "maybe", "k-3")) == grpc.StatusCode.UNAVAILABLE
        assert (await first.db["leases"].find_one({"_id": task.task_id}))["state"] == "leased"
        assert await first.db["submissions"].count_documents({}) == 0
    finally:
        await admin.close()
        await first.stop()

    second = _gateway(env, relay_after_s=0.0, relay_seconds=3600.0)
    await second.start()
    try:
        async def relayed() -> bool:
            return await second.db["outbox"].count_documents({}) == 0

        await eventually(relayed)
        labels = await env.read_all("label.submitted")
        assert [(r["event_id"], r["label"]) for r in labels] == [(derived_id("submitted", "ann/k-3"), "maybe")]
        lease = await second.db["leases"].find_one({"_id": task.task_id})
        assert (lease["state"], lease["submission"]) == ("submitted", "ann/k-3")
        assert (await second.db["submissions"].find_one({"_id": "ann/k-3"}))["published"] is True
        # The annotator, told nothing, tries again: it is the same submission, answered as a duplicate.
        client = GatewayClient(f"127.0.0.1:{second.component.port}", token)
        try:
            again = await client.submit(task.task_id, "maybe", "k-3")
        finally:
            await client.close()
        assert again.duplicate and len(await env.read_all("label.submitted")) == 1
    finally:
        await second.stop()


async def test_items_a_dead_gateway_stored_reach_the_topic_once_without_a_second_ingest(env: Env) -> None:
    first = _gateway(env, relay_seconds=3600.0)
    await first.start()
    admin = GatewayClient(f"127.0.0.1:{first.component.port}", ADMIN)
    try:
        await admin.configure_project(PROJECT, LABELS, guidelines="v1")
        failures = _publish_fails_for(first, ItemIngested)
        items = [pb.IngestItem(project=PROJECT, item_id=f"it-{n}", text=f"text {n}") for n in range(3)]
        assert await status_of(admin.ingest_items(items)) == grpc.StatusCode.UNAVAILABLE
        assert failures == [1] and await first.db["items"].count_documents({}) == 3
    finally:
        await admin.close()
        await first.stop()

    second = _gateway(env, relay_after_s=0.0, relay_seconds=3600.0)
    await second.start()
    try:
        async def relayed() -> bool:
            return await second.db["outbox"].count_documents({}) == 0

        await eventually(relayed)
        ingested = await env.read_all("item.ingested")
        assert sorted(r["item_id"] for r in ingested) == ["it-0", "it-1", "it-2"], "each once"
        assert await second.db["history"].count_documents({"kind": "ingested"}) == 3
    finally:
        await second.stop()


async def test_a_restarted_gateway_relays_only_once_its_broker_is_connected(env: Env) -> None:
    """Its relay's pass at start ran while the broker was still connecting: whenever its reads beat the
    connection (under load), its publish failed and what a dead gateway stored waited a whole relay_seconds."""
    runtime = _gateway(env, relay_after_s=0.0, relay_seconds=3600.0)
    relay = runtime.component.jobs.relay
    run_once, connected = relay.run_once, []

    async def observed() -> int:
        connected.append(await runtime.bus.broker.ping(3))
        return await run_once()

    relay.run_once = observed  # type: ignore[method-assign]
    await runtime.start()
    try:
        async def passed() -> list[bool]:
            return connected

        await eventually(passed)
        assert connected == [True], "the relay's first pass ran before the broker was connected"
    finally:
        await runtime.stop()


async def test_a_relay_pass_whose_publish_failed_is_tried_again_without_waiting_a_whole_period(env: Env) -> None:
    first = _gateway(env, relay_seconds=3600.0)
    await first.start()
    admin = GatewayClient(f"127.0.0.1:{first.component.port}", ADMIN)
    try:
        await admin.configure_project(PROJECT, LABELS, guidelines="v1")
        user, task, _ = await _leased_task(env, first, admin)
        failures = _publish_fails_for(first, LabelSubmitted)
        assert await status_of(user.submit(task.task_id, "yes", "k-4")) == grpc.StatusCode.UNAVAILABLE
        assert failures == [1]
    finally:
        await admin.close()
        await first.stop()

    # The restarted gateway's one pass (at start; the next would be an hour later) meets a broker that refuses
    # its publish once (a leader election, a timeout under load): the record stays and is tried again soon.
    second = _gateway(env, relay_after_s=0.0, relay_seconds=3600.0)
    failures = _publish_fails_for(second, LabelSubmitted)
    await second.start()
    try:
        async def relayed() -> bool:
            return await second.db["outbox"].count_documents({}) == 0

        await eventually(relayed)
        assert failures == [1], "the relay's first publish failed"
        labels = await env.read_all("label.submitted")
        assert [(r["event_id"], r["label"]) for r in labels] == [(derived_id("submitted", "ann/k-4"), "yes")]
        assert (await second.db["submissions"].find_one({"_id": "ann/k-4"}))["published"] is True
    finally:
        await second.stop()
