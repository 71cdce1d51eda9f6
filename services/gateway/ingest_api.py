"""IngestService: admins add items; every item is checked before any is stored, then stored and published."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from labelmesh.runtime.outbox import record
from schemas.events import ItemIngested
from schemas.spans import SpanError
from schemas.rpc import gateway_pb2 as pb
from schemas.rpc import gateway_pb2_grpc as pb_grpc
from services.gateway.api import Gateway, refuse
from services.gateway.auth import Caller, Role
from services.gateway.domain.bounds import check_fit
from services.gateway.domain.ingest import NewItem, check_batch, check_item, conflict, conflicts, ingested_event
from services.gateway.domain.projects import task_of
from services.gateway.domain.refusals import Refused
from services.gateway.spans import raw_spans
from services.gateway.store import history
from services.gateway.store.items import item_doc


def decoded(n: int, item: pb.IngestItem) -> NewItem:
    try:
        golden_spans = raw_spans(item.golden_spans)
    except SpanError as exc:
        raise Refused("invalid", f"item {n} ({item.item_id!r}): golden_spans: {exc}; nothing was ingested") from None
    return NewItem(project=item.project, item_id=item.item_id, text=item.text, source=item.source,
                   dataset=item.dataset, golden_label=item.golden_label, trusted_label=item.trusted_label,
                   metadata=dict(item.metadata), golden_spans=golden_spans)


async def read_stream(items: AsyncIterator[pb.IngestItem], context: grpc.aio.ServicerContext, max_items: int,
                      max_bytes: int) -> list[pb.IngestItem]:
    """A stream's items, refused with RESOURCE_EXHAUSTED as soon as it passes either cap (before it is buffered)."""
    read: list[pb.IngestItem] = []
    size = 0
    async for item in items:
        size += item.ByteSize()
        if len(read) >= max_items or size > max_bytes:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"a stream carries at most {max_items} items and {max_bytes} bytes; split it into "
                                "several streams; nothing was ingested")
        read.append(item)
    return read


class IngestServicer(pb_grpc.IngestServiceServicer):
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def IngestItems(self, request: pb.IngestItemsRequest, context: grpc.aio.ServicerContext) -> pb.IngestItemsResponse:
        caller = await self._ingester(context)
        return await self._ingest(caller, list(request.items), context)

    async def IngestStream(
        self, request_iterator: AsyncIterator[pb.IngestItem], context: grpc.aio.ServicerContext
    ) -> pb.IngestItemsResponse:
        # Authorised before the first item is read: a caller without the role cannot make the gateway buffer.
        caller = await self._ingester(context)
        items = await read_stream(request_iterator, context, self.gw.settings.max_stream_items,
                                  self.gw.settings.max_stream_bytes)
        return await self._ingest(caller, items, context, streamed=True)

    async def _ingester(self, context: grpc.aio.ServicerContext) -> Caller:
        # Ingest writes what every service trains and routes on: only an admin may (an annotator could otherwise
        # plant items, or re-send ids to change them).
        caller = await self.gw.caller(context, Role.ADMIN)
        await self.gw.limits.check(context, "ingest", caller.annotator_id)
        return caller

    async def _ingest(
        self, caller: Caller, items: list[pb.IngestItem], context: grpc.aio.ServicerContext, streamed: bool = False
    ) -> pb.IngestItemsResponse:
        try:
            new = [decoded(n, item) for n, item in enumerate(items)]
            check_batch(len(new), self.gw.settings.max_batch_items, streamed)
            events = await self._events(caller, new, context)
            check_fit(events, "item")
            # Checked before anything is written, so a refused request ingests nothing.
            changed = conflicts(events, await self.gw.items.digests(events))
            if changed:
                raise conflict(changed, "nothing was ingested")
        except Refused as refused:
            await refuse(context, refused)
        # Shown by GetItem and ExportFinalLabels. Keyed by item id: one id sent for two projects in one request
        # stores the metadata sent last for both.
        metadata = {item.item_id: item.metadata for item in new}
        docs = [item_doc(event, metadata[event.item_id]) for event in events]
        # Bulk commands, not a round trip per item: ingest is on every item's path (bench/pipeline_throughput.py).
        # Inserts of unique ids: of two replicas ingesting one new id at once, one wins and the other compares.
        # Written down first: a gateway that dies before it publishes leaves the items to the relay (relay.py).
        await self.gw.outbox.add([record(event, "ingest") for event in events])
        again = [events[i] for i in await self.gw.items.insert_new(docs)]
        raced = conflicts(again, await self.gw.items.digests(again)) if again else []
        refused = [e.event_id for e in events if e.item_id in raced]
        events = [e for e in events if e.item_id not in raced]
        await self.gw.publish(events)
        await self.gw.history.add([history.ingested(event) for event in events])
        await self.gw.outbox.done([*refused, *(e.event_id for e in events)])
        if raced:
            await refuse(context, conflict(raced, "the others in this request were ingested"))
        return pb.IngestItemsResponse(accepted=len(events), item_ids=[e.item_id for e in events])

    async def _events(self, caller: Caller, items: list[NewItem], context: grpc.aio.ServicerContext
                      ) -> list[ItemIngested]:
        """Each item checked against its project (read once per project, in the order the items name them)."""
        projects: dict[str, dict[str, Any]] = {}
        events: list[ItemIngested] = []
        seen: set[tuple[str, str]] = set()
        for n, item in enumerate(items):
            if item.project not in projects:
                projects[item.project] = await self.gw.project(context, item.project)
            project = projects[item.project]
            item = check_item(n, item, set(project["labels"]), seen, self.gw.settings.max_text_chars,
                              caller.role is Role.ADMIN, task_of(project))
            seen.add((item.project, item.item_id))
            events.append(ingested_event(item))
        return events
