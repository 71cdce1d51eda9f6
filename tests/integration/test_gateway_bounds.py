"""Free-text bounds and topic size limits at the gateway (issue 21, item 11), against a real gateway, Kafka and
FerretDB: source and dataset are bounded, and an event that cannot fit its topic is refused with INVALID_ARGUMENT
before anything is stored, instead of failing at the broker on every retry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from labelmesh.client import GatewayClient
from schemas.rpc import gateway_pb2 as pb
from schemas.topics import KAFKA_MAX_MESSAGE_BYTES
from tests.gateway_helpers import ADMIN, LABELS, PROJECT

pytestmark = pytest.mark.integration
S = grpc.StatusCode
# A control character is six bytes in JSON (\u0001): this many are past the topic's limit in any event.
OVERSIZED = "\x01" * (KAFKA_MAX_MESSAGE_BYTES // 6 + 1_000)


async def _refused(call: Awaitable[Any]) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == S.INVALID_ARGUMENT, info.value.details()
    return info.value.details()


async def test_source_and_dataset_are_bounded(gateway) -> None:  # type: ignore[no-untyped-def]
    runtime, admin = gateway
    for field in ("source", "dataset"):
        item = pb.IngestItem(project=PROJECT, item_id="i1", text="a text", **{field: "s" * 10_000})
        assert field in await _refused(admin.ingest_items([item]))
    assert await runtime.db["items"].count_documents({}) == 0


async def test_guidelines_that_cannot_fit_the_topic_are_refused_and_not_stored(gateway) -> None:  # type: ignore[no-untyped-def]
    runtime, admin = gateway
    stored = await runtime.db["projects"].find_one({"_id": PROJECT})
    assert "project.configured" in await _refused(admin.publish_guidelines(PROJECT, OVERSIZED))
    assert "project.configured" in await _refused(admin.configure_project(PROJECT, LABELS, guidelines=OVERSIZED))
    assert await runtime.db["projects"].find_one({"_id": PROJECT}) == stored


async def test_an_item_that_cannot_fit_the_topic_is_refused_and_not_stored(start_gateway) -> None:  # type: ignore[no-untyped-def]
    # An operator may allow long texts; the topic's size limit still decides what can be published.
    runtime = await start_gateway(max_text_chars=len(OVERSIZED))
    admin = GatewayClient(f"127.0.0.1:{runtime.component.port}", ADMIN)
    try:
        await admin.configure_project(PROJECT, LABELS, guidelines="v1")
        items = [pb.IngestItem(project=PROJECT, item_id="small", text="fits"),
                 pb.IngestItem(project=PROJECT, item_id="huge", text=OVERSIZED)]
        assert "item.ingested" in await _refused(admin.ingest_items(items))
        assert await runtime.db["items"].count_documents({}) == 0
        assert (await admin.ingest_items(items[:1])).accepted == 1
    finally:
        await admin.close()
