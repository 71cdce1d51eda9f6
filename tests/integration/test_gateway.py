"""The gateway's gRPC API against the real broker and FerretDB: auth, validation, leases and submissions."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from schemas.events import Tier
from schemas.rpc import gateway_pb2 as pb
from tests.conftest import eventually
from tests.gateway_helpers import LABELS
from tests.gateway_helpers import routed as _routed
from tests.gateway_helpers import status_of as _code
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration


async def test_auth_and_validation_errors_write_nothing(env: Env, gateway) -> None:  # type: ignore[no-untyped-def]
    runtime, admin = gateway
    anon = admin.as_user("")
    stranger = admin.as_user("not-a-token")
    token = await admin.create_annotator("ann-1")
    annotator = admin.as_user(token)
    item = pb.IngestItem(project="gw", item_id="i1", text="is it?")

    assert await _code(anon.ingest.IngestItems(pb.IngestItemsRequest(items=[item]))) == grpc.StatusCode.UNAUTHENTICATED
    assert await _code(stranger.ingest_items([item])) == grpc.StatusCode.UNAUTHENTICATED
    assert await _code(annotator.configure_project("gw", ["a", "b"])) == grpc.StatusCode.PERMISSION_DENIED
    assert await _code(admin.configure_project("gw2", ["only-one"])) == grpc.StatusCode.INVALID_ARGUMENT
    assert await _code(admin.ingest_items([pb.IngestItem(project="nope", item_id="x", text="t")])) == \
        grpc.StatusCode.NOT_FOUND
    # One bad item rejects the whole request: nothing from it is stored.
    bad_batch = [item, pb.IngestItem(project="gw", item_id="i2", text="  ")]
    assert await _code(admin.ingest_items(bad_batch)) == grpc.StatusCode.INVALID_ARGUMENT
    assert await _code(admin.ingest_items([pb.IngestItem(project="gw", item_id="g", text="t", golden_label="nah")])) \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert await _code(annotator.ingest_items([pb.IngestItem(project="gw", item_id="g", text="t", golden_label="yes")])) \
        == grpc.StatusCode.PERMISSION_DENIED
    assert await runtime.db["items"].count_documents({}) == 0
    assert await _code(annotator.annotation.SubmitLabel(
        pb.SubmitLabelRequest(task_id="nope", label="yes", idempotency_key="k"), metadata=annotator.metadata
    )) == grpc.StatusCode.NOT_FOUND
    assert await _code(admin.history("gw", "nope")) == grpc.StatusCode.NOT_FOUND
    assert await runtime.db["submissions"].count_documents({}) == 0

    response = await admin.ingest_items([item])
    assert response.accepted == 1
    ingested = await env.read("item.ingested", lambda rs: len(rs) >= 1)
    assert ingested[0]["item_id"] == "i1" and ingested[0]["payload"]["text"] == "is it?"

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{runtime.component.port}")
    health = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="labelmesh.v1.AnnotationService")
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    await channel.close()


async def test_leases_consensus_expert_and_idempotent_submission(env: Env, gateway) -> None:  # type: ignore[no-untyped-def]
    runtime, admin = gateway
    users = {name: admin.as_user(await admin.create_annotator(name)) for name in ("a", "b", "c")}
    expert = admin.as_user(await admin.create_annotator("e", role="expert"))
    await admin.ingest_items([pb.IngestItem(project="gw", item_id=i, text=f"text {i}") for i in ("m", "x")])
    await env.publish_events([_routed("m", Tier.MULTI, 2), _routed("x", Tier.EXPERT, 1)])

    async def queued() -> int:
        return await runtime.db["tasks"].count_documents({"status": "open"})

    await eventually(lambda: _at_least(queued, 2))

    task_a = await users["a"].lease("gw")
    assert task_a.item_id == "m" and task_a.text == "text m" and list(task_a.labels) == LABELS
    again = await users["a"].lease("gw")
    assert again.task_id == task_a.task_id, "an annotator holding a lease gets the same task, not a second copy"
    task_b = await users["b"].lease("gw")
    assert task_b.item_id == "m" and task_b.task_id != task_a.task_id
    assert await users["c"].lease("gw") is None, "consensus needs 2 distinct people; the expert item is not theirs"
    task_e = await expert.lease("gw")
    assert task_e.item_id == "x" and task_e.reasons == ["test"]

    assert await _code(users["b"].submit(task_a.task_id, "yes", "k1")) == grpc.StatusCode.PERMISSION_DENIED
    assert await _code(users["a"].submit(task_a.task_id, "purple", "k1")) == grpc.StatusCode.INVALID_ARGUMENT
    first = await users["a"].submit(task_a.task_id, "yes", "k1", time_spent_ms=900)
    retry = await users["a"].submit(task_a.task_id, "yes", "k1", time_spent_ms=900)
    assert not first.duplicate and retry.duplicate and first.submission_id == retry.submission_id
    assert await _code(users["a"].submit(task_a.task_id, "no", "k2")) == grpc.StatusCode.FAILED_PRECONDITION

    # b lets the lease run out: the slot returns to the queue, and the late submission is refused.
    await asyncio.sleep(5.6)
    assert await _code(users["b"].submit(task_b.task_id, "no", "kb")) == grpc.StatusCode.FAILED_PRECONDITION
    task_c = await users["c"].lease("gw")
    assert task_c.item_id == "m"
    await users["c"].submit(task_c.task_id, "no", "kc")

    submitted = await env.read("label.submitted", lambda rs: len(rs) >= 2)
    assert sorted((r["annotator_id"], r["label"]) for r in submitted) == [("a", "yes"), ("c", "no")]
    assert all(r["guideline_version"] == 1 for r in submitted)
    assert await runtime.db["tasks"].find_one({"item_id": "m"}) is not None
    assert (await runtime.db["tasks"].find_one({"item_id": "m"}))["status"] == "done"


async def _at_least(check, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await check() >= n


async def test_concurrent_leases_fill_each_slot_once(env: Env, gateway) -> None:  # type: ignore[no-untyped-def]
    """Eight people asking at once for a task that needs three: exactly three distinct leases, each answerable.

    On FerretDB a find_one_and_update is not isolated; without the queue's lock several people won the last
    slot and one $push overwrote another, so someone who had answered could be handed the task again.
    """
    runtime, admin = gateway
    names = [f"p{i}" for i in range(8)]
    users = {name: admin.as_user(await admin.create_annotator(name)) for name in names}
    await admin.ingest_items([pb.IngestItem(project="gw", item_id="hot", text="contested")])
    await env.publish_events([_routed("hot", Tier.MULTI, 3)])

    async def queued() -> int:
        return await runtime.db["tasks"].count_documents({"status": "open"})

    await eventually(lambda: _at_least(queued, 1))
    tasks = await asyncio.gather(*(users[n].lease("gw") for n in names))
    winners = [n for n, t in zip(names, tasks) if t is not None]
    assert len(winners) == 3
    task = await runtime.db["tasks"].find_one({"item_id": "hot"})
    slots = await runtime.db["claims"].find({"task_id": task["_id"], "state": {"$exists": True}}).to_list()
    assert sorted(s["_id"] for s in slots) == [f"{task['_id']}#{k}" for k in range(3)]
    assert sorted(s["annotator"] for s in slots) == sorted(winners)
    for name, leased in zip(names, tasks):
        if leased is not None:
            await users[name].submit(leased.task_id, "yes", f"{name}-1")
    assert all(t is None for t in await asyncio.gather(*(users[n].lease("gw") for n in names)))
    assert (await runtime.db["tasks"].find_one({"item_id": "hot"}))["status"] == "done"


async def test_a_retried_submission_goes_through_when_the_gateway_died_after_finishing_its_lease(
        env: Env, gateway) -> None:  # type: ignore[no-untyped-def]
    """The gateway marks the lease submitted, then stores the submission. Killed in between, it used to answer
    the client's retry with FAILED_PRECONDITION and the label was lost (crash run)."""
    runtime, admin = gateway
    user = admin.as_user(await admin.create_annotator("late"))
    await admin.ingest_items([pb.IngestItem(project="gw", item_id="half", text="half done")])
    await env.publish_events([_routed("half", Tier.SINGLE, 1)])

    async def queued() -> int:
        return await runtime.db["tasks"].count_documents({"item_id": "half", "status": "open"})

    await eventually(lambda: _at_least(queued, 1))
    task = await user.lease("gw")
    queue = runtime.component.gw.queue
    lease = await queue.get_lease(task.task_id)
    # What the killed gateway had done: the lease finished by this submission, the submission not yet stored.
    await queue.finish(lease, "submitted", submission="late/k-half")
    assert await runtime.db["submissions"].count_documents({}) == 0

    response = await user.submit(task.task_id, "yes", "k-half")
    assert response.submission_id == "late/k-half" and not response.duplicate
    submitted = await env.read("label.submitted", lambda rs: any(r["item_id"] == "half" for r in rs))
    assert [(r["annotator_id"], r["label"]) for r in submitted if r["item_id"] == "half"] == [("late", "yes")]
    assert await _code(user.submit(task.task_id, "no", "k-other")) == grpc.StatusCode.FAILED_PRECONDITION
