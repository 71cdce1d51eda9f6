"""The bus's in-process retries on the real broker and database: a re-run batch is marked recovering, and qc
publishes on the re-run what its first attempt stored."""

from __future__ import annotations

from collections import Counter

import pytest
from aiokafka.partitioner import murmur2
from prometheus_client import CollectorRegistry

from labelmesh.runtime.bus import EventBus, PoisonEvent
from labelmesh.runtime.inbox import Inbox, recovering
from labelmesh.runtime.settings import CommonSettings
from schemas.events import Envelope, ItemIngested, TextPayload, Tier
from services.qc.app import create_app as create_qc
from services.qc.settings import QcSettings
from tests.conftest import eventually
from tests.qc_events import config as _config
from tests.qc_events import ingest as _ingest
from tests.qc_events import label as _label
from tests.qc_events import route as _route
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


def _same_partition(names: list[str], partitions: int = 3) -> list[str]:
    """Names whose records land on one partition of a 3-partition topic (aiokafka's default partitioner), so a
    consumer reads them in this order and, published before it starts, in one batch."""
    def partition(name: str) -> int:
        return (murmur2(name.encode()) & 0x7FFFFFFF) % partitions

    return [n for n in names if partition(n) == partition(names[0])]


async def test_qc_publishes_what_it_stored_when_a_later_event_of_the_batch_fails(env: Env) -> None:
    """A final label and an escalation decided in a batch whose last event then fails (a label of a project qc never
    learns: catalog.require gives up) are stored and published, once, by the bus's re-run of the events before it in
    the same process, not found "unchanged" and kept silent; the failing event is dead-lettered with its reason."""
    p = "rerun"
    single, multi, ghost = _same_partition([f"item-{i}" for i in range(40)])[:3]
    settings = env.settings(QcSettings, confirm_single=False, project_wait_s=0.5)
    first = create_qc(settings)
    await first.start()
    try:
        await env.publish_events([_config(p), _ingest(p, single), _route(p, single, Tier.SINGLE, 1),
                                  _ingest(p, multi), _route(p, multi, Tier.MULTI, 2), _label(p, multi, "ann-1", "a")])

        async def routed() -> bool:
            return await first.db["items"].count_documents({"tier": {"$exists": True}, "votes": {"$size": 1}}) == 1 \
                and await first.db["items"].count_documents({"tier": {"$exists": True}}) == 2

        await eventually(routed)
    finally:
        await first.stop()
    # One partition, in this order: the two decisive labels, then the label that fails. Published while no qc
    # runs, so the next one reads them as one batch.
    await env.publish_events([_label(p, single, "ann-0", "b"), _label(p, multi, "ann-2", "c"),
                              _label("ghost", ghost, "ann-0", "a")])
    second = create_qc(settings)
    await second.start()
    try:
        letters = await env.read("deadletter", lambda rs: bool(rs), timeout=60)
        assert [(d["topic"], d["key"]) for d in letters] == [(f"{env.prefix}label.submitted", ghost)]
        assert "unknown project 'ghost'" in letters[0]["reason"]
        async def final_stored() -> dict[str, object] | None:
            doc = await second.db["items"].find_one({"_id": f"{p}/{single}"})
            return doc if doc is not None and "final" in doc else None

        # qc writes a run's decisions once the run is decided, so the failed attempt stored nothing: the re-run of
        # the events before the failing one stores them, after the dead letter went out.
        stored = await eventually(final_stored)
        assert stored["final"]["label"] == "b"
        finals = await env.read("label.finalized", lambda rs: any(r["item_id"] == single for r in rs), timeout=60)
        assert [(r["item_id"], r["label"], r["version"]) for r in finals] == [(single, "b", 1)]
        flags = await env.read("qc.flagged", lambda rs: any(r["item_id"] == multi for r in rs), timeout=60)
        assert [(r["item_id"], r["kind"]) for r in flags] == [(multi, "disagreement")]
    finally:
        await second.stop()


async def test_poison_events_are_dead_lettered_at_once_and_the_batch_is_not_run_again_for_each(env: Env) -> None:
    """Every other event of a batch is poisonous: each is dead-lettered with its reason, every good one is
    handled, and the handler sees each event at most twice (its attempt, and the re-run that publishes what
    that attempt stored), not the rest of the batch once more per poison event."""
    items = [ItemIngested(producer="test", project="p", item_id=f"i{i:02d}", payload=TextPayload(text="t"))
             for i in range(60)]
    poison = {e.event_id for e in items[1::2]}
    await env.publish_events(items)  # before the consumer starts: one batch (or a few), in order per partition
    seen: list[str] = []

    async def rejects_poison(events: list[Envelope]) -> None:
        for e in events:
            seen.append(e.event_id)
            if e.event_id in poison:
                raise PoisonEvent(e, f"cannot handle {e.item_id}")

    bus = EventBus(env.settings(CommonSettings), "svc", CollectorRegistry())
    mongo = env.mongo()
    bus.inbox = Inbox(mongo[f"{env.namespace}_svc"])
    bus.subscribe([ItemIngested.TOPIC], rejects_poison, batch_timeout_ms=1000)
    await bus.broker.start()
    try:
        letters = await env.read("deadletter", lambda rs: len(rs) >= len(poison), timeout=120)

        async def good_handled() -> bool:
            return all([await bus.inbox.handled(e.event_id) for e in items if e.event_id not in poison])

        await eventually(good_handled)
    finally:
        await bus.broker.stop()
        await mongo.close()
    assert sorted(d["reason"] for d in letters) == sorted(f"cannot handle {e.item_id}" for e in items[1::2])
    per_event = Counter(seen)
    assert max(per_event.values()) <= 2, f"handled again once per later poison event: {per_event.most_common(3)}"
