"""Active-learning order of the gateway's task queue, over real gRPC, Kafka and FerretDB: spot checks first,
then the most uncertain pre-labels."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from labelmesh.client import GatewayClient
from schemas.events import ItemRouted, LabelScore, Thresholds, Tier
from schemas.rpc import gateway_pb2 as pb
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from tests.conftest import eventually
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration
ADMIN = "test-admin"
Gateway = tuple[Any, GatewayClient]  # the runtime and its admin's client


def _routed(item_id: str, probs: tuple[float, ...], spot_check: bool = False) -> ItemRouted:
    top_k = tuple(LabelScore(label=label, probability=p) for label, p in zip(("yes", "no", "maybe"), probs))
    return ItemRouted(producer="test", project="pq", item_id=item_id, tier=Tier.SINGLE, required_annotators=1,
                      top_k=top_k, spot_check=spot_check, thresholds=Thresholds(), reasons=("test",))


@pytest.fixture
async def gateway(env: Env) -> AsyncIterator[Gateway]:
    """A gateway with project "pq" (labels yes, no, maybe) and no golden tasks, and its admin's client."""
    runtime = create_app(env.settings(GatewaySettings, grpc_port=0, admin_token=ADMIN, golden_rate=0.0))
    await runtime.start()
    admin = GatewayClient(f"127.0.0.1:{runtime.component.port}", ADMIN)
    try:
        await admin.configure_project("pq", ["yes", "no", "maybe"], guidelines="v1")
        yield runtime, admin
    finally:
        await admin.close()
        await runtime.stop()


async def test_humans_get_the_most_informative_items_first(env: Env, gateway: Gateway) -> None:
    runtime, admin = gateway
    ids = ("sure", "torn", "fair", "spot", "unknown-a", "unknown-b")
    await admin.ingest_items([pb.IngestItem(project="pq", item_id=i, text=f"text {i}") for i in ids])
    # Published oldest first in this order; the queue must not simply hand them out in it.
    await env.publish_events([
        _routed("sure", (0.90, 0.05)), _routed("torn", (0.48, 0.46)), _routed("unknown-a", ()),
        _routed("fair", (0.70, 0.20)), _routed("spot", (0.99, 0.01), spot_check=True), _routed("unknown-b", ()),
    ])

    async def queued() -> bool:
        return await runtime.db["tasks"].count_documents({"project": "pq", "status": "open"}) == len(ids)

    await eventually(queued)
    annotator = admin.as_user(await admin.create_annotator("ann"))
    order = []
    while (task := await annotator.lease("pq")) is not None:
        order.append(task.item_id)
        await annotator.submit(task.task_id, "yes", key=f"k-{task.item_id}")
    # Spot check first (it measures auto-label accuracy), then no pre-label at all, then by closeness of the
    # top two probabilities. (The two unknowns tie; which was queued first depends on Kafka partitions.)
    assert order[0] == "spot" and set(order[1:3]) == {"unknown-a", "unknown-b"}
    assert order[3:] == ["torn", "fair", "sure"]


async def test_a_promoted_item_leaves_the_queue_unless_someone_holds_it(env: Env, gateway: Gateway) -> None:
    """The router promotes queued items to auto when the auto border moves below them: the gateway withdraws
    their tasks, except one already leased (its label is still taken) and an expert's."""
    runtime, admin = gateway
    ids = ("held", "queued", "expert")
    await admin.ingest_items([pb.IngestItem(project="pq", item_id=i, text=f"text {i}") for i in ids])
    expert = _routed("expert", (0.97, 0.01)).model_copy(update={"tier": Tier.EXPERT})
    # "held" is the least certain, so the annotator's lease takes it.
    await env.publish_events([_routed("held", (0.93, 0.05)), _routed("queued", (0.97, 0.01)), expert])
    await eventually(lambda: _equals(lambda: open_items(runtime), set(ids)))
    annotator = admin.as_user(await admin.create_annotator("ann"))
    task = await annotator.lease("pq")
    assert task is not None and task.item_id == "held"
    await env.publish_events([
        _routed(i, (0.97, 0.01)).model_copy(update={"event_id": f"promoted-{i}", "tier": Tier.AUTO,
                                                    "required_annotators": 0, "promoted": True})
        for i in ids])
    await eventually(lambda: _equals(lambda: open_items(runtime), {"held", "expert"}))
    superseded = await runtime.db["tasks"].find_one({"project": "pq", "item_id": "queued"})
    assert superseded["status"] == "superseded"
    assert (await annotator.submit(task.task_id, "yes", key="k-held")).submission_id
    assert await annotator.lease("pq") is None, "the promoted item is no one's task now"


async def _equals(read, expected: object) -> bool:
    return await read() == expected


async def test_a_second_opinion_needs_one_more_reviewer_and_never_the_first(env: Env, gateway: Gateway) -> None:
    runtime, admin = gateway
    await admin.ingest_items([pb.IngestItem(project="pq", item_id="doubted", text="text")])
    first, second, third = [admin.as_user(await admin.create_annotator(n)) for n in ("first", "second", "third")]
    await env.publish_events([_routed("doubted", (0.95, 0.03)).model_copy(update={
        "tier": Tier.MULTI, "required_annotators": 2, "counted": ("first",)})])
    await eventually(lambda: _equals(lambda: open_items(runtime), {"doubted"}))
    assert await first.lease("pq") is None, "the first reviewer's label already counts"
    task = await second.lease("pq")
    assert task is not None and task.item_id == "doubted"
    await second.submit(task.task_id, "no", key="k-second")
    assert await third.lease("pq") is None, "two labels were asked for: the first's and the second's"
    await eventually(lambda: _equals(lambda: open_items(runtime), set()))


async def open_items(runtime) -> set[str]:  # type: ignore[no-untyped-def]
    return {t["item_id"] async for t in runtime.db["tasks"].find({"project": "pq", "status": "open"})}
