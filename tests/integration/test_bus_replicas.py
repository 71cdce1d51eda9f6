"""The bus with several replicas on the real broker: co-assigned partitions, broadcasts, multi-partition retries."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, Literal

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict
from pymongo.errors import AutoReconnect

from labelmesh.runtime.bus import BatchHandler, EventBus
from labelmesh.runtime.settings import CommonSettings
from schemas.events import Envelope, ItemIngested, ItemPrelabeled, ProjectConfigured, TextPayload
from tests.conftest import eventually
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration


@pytest.fixture
async def buses(env: Env) -> AsyncIterator[Callable[[], EventBus]]:
    """Makes buses in env's namespace (one per would-be replica); every one started is stopped after the test."""
    made: list[EventBus] = []

    def make() -> EventBus:
        bus = EventBus(env.settings(CommonSettings), "svc", CollectorRegistry())
        made.append(bus)
        return bus

    try:
        yield make
    finally:
        for bus in made:
            await bus.broker.stop()


def collect(into: list[Envelope]) -> BatchHandler:
    async def handle(events: list[Envelope]) -> None:
        into.extend(events)

    return handle


async def test_a_group_owns_the_same_partitions_of_every_topic(env: Env, buses: Callable[[], EventBus]) -> None:
    replicas = [buses(), buses()]
    for bus in replicas:
        bus.subscribe([ItemIngested.TOPIC, ItemPrelabeled.TOPIC], collect([]))
        await bus.broker.start()

    async def settled() -> list[set[tuple[str, int]]]:
        held = [{(tp.topic, tp.partition) for tp in bus.assignment()} for bus in replicas]
        everything = set().union(*held)
        return held if all(held) and len(everything) == 6 and sum(map(len, held)) == 6 else []

    held = await eventually(settled)
    for partitions in held:
        by_topic: dict[str, set[int]] = {}
        for topic, partition in partitions:
            by_topic.setdefault(topic.removeprefix(env.prefix), set()).add(partition)
        assert len(by_topic) == 2 and by_topic["item.ingested"] == by_topic["item.prelabeled"], held


async def test_every_replica_sees_every_broadcast_and_the_group_sees_it_once(
        env: Env, buses: Callable[[], EventBus]) -> None:
    facts = [ProjectConfigured(producer="test", project=f"p{i}", labels=("a", "b"), guideline_version=1)
             for i in range(6)]
    await env.publish_events(facts)
    seen: list[list[Envelope]] = [[], []]
    shared: list[Envelope] = []
    for i in range(2):
        bus = buses()
        bus.subscribe([ProjectConfigured.TOPIC], collect(seen[i]), broadcast=True)
        bus.subscribe([ProjectConfigured.TOPIC], collect(shared), name="svc.projects")
        await bus.broker.start()
    wanted = {e.event_id for e in facts}

    async def all_seen() -> bool:
        return all({e.event_id for e in s} == wanted for s in seen) and {e.event_id for e in shared} == wanted

    await eventually(all_seen)
    # A replica that starts later reads every broadcast from the beginning.
    late: list[Envelope] = []
    bus = buses()
    bus.subscribe([ProjectConfigured.TOPIC], collect(late), broadcast=True)
    await bus.broker.start()

    async def caught_up() -> bool:
        return {e.event_id for e in late} == wanted

    await eventually(caught_up)
    assert sorted(e.event_id for e in shared) == sorted(wanted)  # the shared group handled each one once


async def test_a_transient_failure_across_partitions_loses_nothing(env: Env, buses: Callable[[], EventBus]) -> None:
    items = [ItemIngested(producer="test", project="p", item_id=f"i{i}", payload=TextPayload(text="t"))
             for i in range(30)]
    partition_of = {item.event_id: i % 3 for i, item in enumerate(items)}
    producer = AIOKafkaProducer(bootstrap_servers=env.bootstrap)
    await producer.start()
    try:
        for item in items:
            await producer.send_and_wait(env.prefix + item.TOPIC, item.model_dump_json().encode(),
                                         key=item.key.encode(), partition=partition_of[item.event_id])
    finally:
        await producer.stop()

    failed: list[Envelope] = []
    handled: list[Envelope] = []

    async def flaky(events: list[Envelope]) -> None:
        if not failed:
            failed.extend(events)
            raise AutoReconnect("database away")  # transient: the batch is redelivered, not retried in place
        handled.extend(events)

    bus = buses()
    bus.subscribe([ItemIngested.TOPIC], flaky, max_records=500, batch_timeout_ms=1000)
    await bus.broker.start()

    async def all_handled() -> bool:
        return {e.event_id for e in handled} == set(partition_of)

    await eventually(all_handled)
    assert len({partition_of[e.event_id] for e in failed}) >= 2, "the failed batch must span partitions"


async def test_a_failed_broadcast_batch_is_read_again(env: Env, buses: Callable[[], EventBus]) -> None:
    facts = [ProjectConfigured(producer="test", project=f"p{i}", labels=("a", "b"), guideline_version=1)
             for i in range(6)]
    await env.publish_events(facts)
    attempts: list[list[Envelope]] = []
    seen: list[Envelope] = []

    async def flaky(events: list[Envelope]) -> None:
        attempts.append(events)
        if len(attempts) == 1:
            raise AutoReconnect("away")  # no group offsets to fall back on: the bus rewinds in process
        seen.extend(events)

    bus = buses()
    bus.subscribe([ProjectConfigured.TOPIC], flaky, broadcast=True, batch_timeout_ms=1000)
    await bus.broker.start()

    async def all_seen() -> bool:
        return {e.event_id for e in seen} == {e.event_id for e in facts}

    await eventually(all_seen)


async def test_a_broadcast_with_a_projection_gets_lean_events_and_dead_letters_what_they_refuse(
        env: Env, buses: Callable[[], EventBus]) -> None:
    class Lean(BaseModel):
        model_config = ConfigDict(extra="ignore", frozen=True)
        TOPIC: ClassVar[str] = ProjectConfigured.TOPIC
        event_id: str
        type: Literal["project.configured"]
        project: str

    facts = [ProjectConfigured(producer="test", project=f"p{i}", labels=("a", "b"), guideline_version=1)
             for i in range(3)]
    await env.publish_events(facts)
    await env.publish(ProjectConfigured.TOPIC, b'{"type": "project.configured", "event_id": "broken"}', key="broken")
    seen: list[Any] = []
    bus = buses()
    bus.subscribe([ProjectConfigured.TOPIC], collect(seen), broadcast=True, projection={ProjectConfigured.TOPIC: Lean})
    await bus.broker.start()
    letters = await env.read("deadletter", lambda rs: bool(rs))

    async def all_seen() -> bool:
        return {e.event_id for e in seen} == {e.event_id for e in facts}

    await eventually(all_seen)
    assert all(isinstance(e, Lean) for e in seen) and {e.project for e in seen} == {"p0", "p1", "p2"}
    assert len(letters) == 1 and letters[0]["key"] == "broken", letters
    assert "undecodable event" in letters[0]["reason"] and "project" in letters[0]["reason"], letters
