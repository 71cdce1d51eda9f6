"""The gateway's abuse limits (issue 21, item 7) against a real gateway, Kafka and FerretDB: IngestStream is
authorised before it reads a single item, a stream is capped in items and bytes, and ingest, LeaseTask and
FlagItem are rate limited per caller with RESOURCE_EXHAUSTED and a retry hint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from labelmesh.client import GatewayClient
from schemas.rpc import gateway_pb2 as pb
from services.gateway.limits import RETRY_AFTER_KEY
from tests.gateway_helpers import ADMIN, LABELS, PROJECT, status_of

pytestmark = pytest.mark.integration
S = grpc.StatusCode
# How long a refused stream may take to be answered. The answer comes at once; before the fix it never came,
# because the gateway waited for the client to end a stream it was never going to end.
ANSWER_WITHIN_S = 20


async def _client(start_gateway: Callable[..., Awaitable[Any]], **overrides: Any) -> tuple[Any, GatewayClient]:
    runtime = await start_gateway(**overrides)
    admin = GatewayClient(f"127.0.0.1:{runtime.component.port}", ADMIN)
    await admin.configure_project(PROJECT, LABELS, guidelines="v1")
    return runtime, admin


async def test_ingest_stream_is_refused_before_the_client_ends_it(gateway) -> None:  # type: ignore[no-untyped-def]
    runtime, admin = gateway
    annotator = admin.as_user(await admin.create_annotator("ann"))
    never = asyncio.Event()

    async def open_ended() -> AsyncIterator[pb.IngestItem]:
        yield pb.IngestItem(project=PROJECT, item_id="planted", text="x")
        await never.wait()  # a client that keeps the stream open, as a buffering attack would

    for client, code in ((annotator, S.PERMISSION_DENIED), (admin.as_user("no-such-token"), S.UNAUTHENTICATED)):
        call = client.ingest.IngestStream(open_ended(), metadata=client.metadata)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await asyncio.wait_for(call, ANSWER_WITHIN_S)
        assert info.value.code() == code
    assert await runtime.db["items"].count_documents({}) == 0


async def test_a_stream_over_its_item_or_byte_cap_is_refused_and_ingests_nothing(start_gateway) -> None:  # type: ignore[no-untyped-def]
    runtime, admin = await _client(start_gateway, max_stream_items=3, max_stream_bytes=2_000)
    try:
        small = [pb.IngestItem(project=PROJECT, item_id=f"i{n}", text="t") for n in range(4)]
        big = [pb.IngestItem(project=PROJECT, item_id=f"b{n}", text="x" * 900) for n in range(3)]
        for items in (small, big):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await admin.ingest.IngestStream(iter(items), metadata=admin.metadata)
            assert info.value.code() == S.RESOURCE_EXHAUSTED and "split it" in info.value.details()
        assert await runtime.db["items"].count_documents({}) == 0
        ok = await admin.ingest.IngestStream(iter(small[:3]), metadata=admin.metadata)  # at the cap is fine
        assert ok.accepted == 3
    finally:
        await admin.close()


async def test_ingest_lease_and_flag_are_rate_limited_per_caller(start_gateway) -> None:  # type: ignore[no-untyped-def]
    # Refill rates so slow that no token comes back during the test: the burst is all a caller gets.
    runtime, admin = await _client(start_gateway, ingest_rate=0.001, ingest_burst=2, lease_rate=0.001, lease_burst=2,
                                   flag_rate=0.001, flag_burst=1)
    try:
        first = admin.as_user(await admin.create_annotator("first"))
        second = admin.as_user(await admin.create_annotator("second"))
        item = pb.IngestItem(project=PROJECT, item_id="i1", text="a text")
        await admin.ingest_items([item])
        await admin.ingest.IngestStream(iter([item]), metadata=admin.metadata)  # the same content: a no-op
        refused = [admin.ingest_items([item]), admin.ingest.IngestStream(iter([item]), metadata=admin.metadata)]
        for client in (first, second):
            assert [await client.lease(PROJECT) for _ in range(2)] == [None, None]  # nothing routed: NOT_FOUND
            refused.append(client.lease(PROJECT))
            assert await client.flag(PROJECT, "the guidelines are unclear")
            refused.append(client.flag(PROJECT, "again"))
        for call in refused:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code() == S.RESOURCE_EXHAUSTED and "retry in" in info.value.details()
            hint = dict(info.value.trailing_metadata() or ())
            assert int(hint[RETRY_AFTER_KEY]) > 0
        # Another caller's limit is not theirs: a new annotator still leases and flags.
        third = admin.as_user(await admin.create_annotator("third"))
        assert await status_of(third.annotation.LeaseTask(pb.LeaseTaskRequest(project=PROJECT),
                                                          metadata=third.metadata)) == S.NOT_FOUND
    finally:
        await admin.close()
