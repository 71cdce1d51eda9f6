"""The bus's in-process retries on the real broker and database: a re-run batch is marked recovering."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from labelmesh.runtime.bus import EventBus
from labelmesh.runtime.inbox import Inbox, recovering
from labelmesh.runtime.settings import CommonSettings
from schemas.events import Envelope, ItemIngested, TextPayload
from tests.conftest import eventually
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration


async def test_a_batch_run_again_in_process_is_recovering(env: Env) -> None:
    """A handler that stored decisions and then failed must republish them when the same batch runs again."""
    items = [ItemIngested(producer="test", project="p", item_id=f"i{i}", payload=TextPayload(text="t"))
             for i in range(5)]
    await env.publish_events(items)
    calls: list[tuple[set[str], frozenset[str]]] = []

    async def fails_once(events: list[Envelope]) -> None:
        calls.append(({e.event_id for e in events}, recovering.get()))
        if len(calls) == 1:
            raise RuntimeError("a later event of the batch failed after earlier ones were stored")

    bus = EventBus(env.settings(CommonSettings), "svc", CollectorRegistry())
    mongo = env.mongo()
    bus.inbox = Inbox(mongo[f"{env.namespace}_svc"])
    bus.subscribe([ItemIngested.TOPIC], fails_once, batch_timeout_ms=1000)
    await bus.broker.start()
    try:
        async def all_handled() -> bool:
            return set().union(*(ids for ids, _ in calls[1:])) == {i.event_id for i in items} if calls else False

        await eventually(all_handled)
    finally:
        await bus.broker.stop()
        await mongo.close()
    first_ids, first_recovering = calls[0]
    assert not first_recovering
    second_ids, second_recovering = calls[1]
    assert second_ids == first_ids and first_ids <= second_recovering
