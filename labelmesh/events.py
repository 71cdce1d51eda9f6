"""`labelmesh events`: dump or tail any topic (dead letters included) as JSON lines, filtered, from an offset or a time."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from labelmesh.runtime.settings import CommonSettings
from labelmesh.streams import EventFilter, Line, describe

FETCH_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Start:
    """Where reading starts on every partition: the beginning, the end, an offset, or the first record at a time."""

    offset: int | None = None
    since_ms: int | None = None
    latest: bool = False


async def topic_partitions(bootstrap: str, topics: list[str]) -> list[TopicPartition]:
    """Every partition of the given (full) topic names; unknown topics are errors."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="labelmesh-events")
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    missing = [d["topic"] for d in described if d["error_code"] or not d["partitions"]]
    if missing:
        raise ValueError(f"topic(s) {', '.join(missing)} do not exist (run `labelmesh topics`)")
    return [TopicPartition(d["topic"], p["partition"]) for d in described
            for p in sorted(d["partitions"], key=lambda p: p["partition"])]


async def _seek(consumer: AIOKafkaConsumer, partitions: list[TopicPartition], start: Start) -> None:
    if start.since_ms is not None:
        found = await consumer.offsets_for_times({tp: start.since_ms for tp in partitions})
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            hit = found.get(tp)
            consumer.seek(tp, hit.offset if hit is not None else ends[tp])
    elif start.latest:
        await consumer.seek_to_end(*partitions)
    elif start.offset is not None:
        beginnings = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, min(max(start.offset, beginnings[tp]), ends[tp]))
    else:
        await consumer.seek_to_beginning(*partitions)


async def read_lines(
    settings: CommonSettings, topics: list[str], start: Start = Start(), *, follow: bool = False,
    partition: int | None = None,
) -> AsyncIterator[Line]:
    """Records of the given topics (short names) as Lines; without follow, stops at the end offsets seen at start."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_bytes=FETCH_BYTES, max_partition_fetch_bytes=FETCH_BYTES,
        client_id="labelmesh-events",
    )
    await consumer.start()
    try:
        partitions = await topic_partitions(settings.kafka_bootstrap, [settings.topic(t) for t in topics])
        if partition is not None:
            partitions = [tp for tp in partitions if tp.partition == partition]
        consumer.assign(partitions)
        await _seek(consumer, partitions, start)
        ends = await consumer.end_offsets(partitions)
        while True:
            if not follow:
                positions = {tp: await consumer.position(tp) for tp in partitions}
                if all(positions[tp] >= ends[tp] for tp in partitions):
                    return
            batch = await consumer.getmany(timeout_ms=500, max_records=1000)
            for tp, records in batch.items():
                for r in records:
                    if not follow and r.offset >= ends[tp]:
                        continue
                    yield describe(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value,
                                   settings.topic_prefix)
    finally:
        await consumer.stop()


async def print_events(
    settings: CommonSettings, topics: list[str], event_filter: EventFilter, start: Start, *, follow: bool,
    limit: int | None = None, partition: int | None = None, write: Callable[[str], None] | None = None,
) -> int:
    """Print matching records as JSON lines; returns how many were printed."""
    out = write or (lambda text: (sys.stdout.write(text + "\n"), sys.stdout.flush()))
    printed = 0
    lines = read_lines(settings, topics, start, follow=follow, partition=partition)
    try:
        async for line in lines:
            if not event_filter.matches(line):
                continue
            out(json.dumps(line.doc, ensure_ascii=False, sort_keys=True))
            printed += 1
            if limit is not None and printed >= limit:
                break
    except asyncio.CancelledError:
        pass
    finally:
        await lines.aclose()
    return printed


def run(
    topics: list[str], *, projects: list[str], items: list[str], types: list[str], since: str | None,
    until: str | None, offset: int | None, latest: bool, partition: int | None, follow: bool, limit: int | None,
) -> int:
    """The `labelmesh events` command: validate the arguments, then print until the end (or forever with follow)."""
    from labelmesh.streams import check_topics, parse_time, to_ms

    names = check_topics(topics)
    since_ms = to_ms(parse_time(since)) if since else None
    until_ms = to_ms(parse_time(until)) if until else None
    if sum(x is not None and x is not False for x in (since_ms, offset, latest or None)) > 1:
        raise ValueError("give at most one of --since, --offset and --latest")
    event_filter = EventFilter(frozenset(projects), frozenset(items), frozenset(types), since_ms, until_ms)
    start = Start(offset=offset, since_ms=since_ms, latest=latest)
    try:
        return asyncio.run(print_events(CommonSettings(), names, event_filter, start, follow=follow, limit=limit,
                                        partition=partition))
    except KeyboardInterrupt:
        return 0
