"""`labelmesh replay`: rebuild a stopped service's state from the topics, and re-drive dead letters once fixed.

Rebuilding a service means: drop its projections (every collection in its own database, the inbox of processed
event ids included, or replayed events would be skipped as duplicates), then move every one of its consumer groups
(`<namespace>.<service>` and `<namespace>.<service>.<name>`) back to the beginning of its topics (a group of a
topic the rebuild publishes again to the end, see REPUBLISHED). The next start consumes everything again. With
`--since`, projections are kept, offsets move to the first record at or after that time, and only the inbox
entries recorded since then are removed, so those events are applied again on top of the existing state
(handlers are idempotent).

The service must be stopped: a group with active members is refused, because a running consumer would commit
its own offsets over the reset and keep serving from state that is being dropped.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata
from pymongo import AsyncMongoClient

from labelmesh.events import topic_partitions
from labelmesh.runtime.inbox import Inbox
from labelmesh.runtime.settings import CommonSettings
from labelmesh.streams import to_ms
from schemas.events import DeadLetter

log = logging.getLogger(__name__)
REPLAYABLE = ("prelabeler", "router", "qc", "trainer")
# The gateway's annotators, tokens, leases, submissions and ingested items come from gRPC calls, not from
# topics: dropping them would lose data that no topic can give back.
NOT_REPLAYABLE = {
    "gateway": "the gateway's state (annotators and tokens, leases, submissions, ingested items) is the source "
               "of events, not a projection of them; it cannot be rebuilt from the topics",
}


# Topics a service publishes and reads back itself, that a full rebuild publishes again: qc's item owner tells the
# owners of annotator and project statistics its facts through qc.evidence, with ids derived from their sources.
# Replayed from the beginning, the old copies reach the statistics group at once, while the item group is still
# rebuilding the labels and items that the agreement, drift and label-error passes read: the passes then ran on
# nearly nothing (bench/replay.py: agreement over 0 labels instead of 900). A full rebuild starts these groups at
# the end, and they count the facts again as the item group republishes them, in the order they happened. (The
# router's threshold.evidence carries all its owner needs, so it is replayed like any other topic.)
REPUBLISHED = {"qc": ("qc.evidence",)}


class ReplayRefused(Exception):
    """Replay would be unsafe (a running consumer, an unknown service); nothing was changed."""


@dataclass
class ReplayReport:
    service: str
    groups: dict[str, dict[str, int]] = field(default_factory=dict)  # group -> "topic[partition]" -> offset
    dropped: list[str] = field(default_factory=list)
    inbox_removed: int = 0


async def service_groups(admin: AIOKafkaAdminClient, settings: CommonSettings, service: str) -> list[str]:
    """The service's consumer groups as the broker knows them (one per subscriber, all named after it)."""
    own = settings.consumer_group(service)
    groups = []
    for entry in await admin.list_consumer_groups():
        group = entry[0]
        if group == own or group.startswith(own + "."):
            groups.append(group)
    return sorted(groups)


async def active_members(admin: AIOKafkaAdminClient, groups: Sequence[str]) -> dict[str, int]:
    """Groups that still have members (a running service instance), with their member count."""
    busy: dict[str, int] = {}
    # One group per request: aiokafka 0.14 fails to decode a DescribeGroups response holding several groups.
    for name in groups:
        for group in (await admin.describe_consumer_groups([name]))[0].groups:
            group_id, state, members = group[1], group[2], group[5]
            if members or state not in ("Empty", "Dead"):
                busy[group_id] = len(members)
    return busy


async def committed(admin: AIOKafkaAdminClient, group: str) -> dict[TopicPartition, int]:
    offsets = await admin.list_consumer_group_offsets(group)
    return {tp: meta.offset for tp, meta in offsets.items()}


async def group_lags(admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer,
                     partitions: dict[str, Sequence[TopicPartition]],
                     starts: dict[TopicPartition, int]) -> dict[str, int]:
    """Records not yet consumed per group (end offset minus committed offset; a partition the group has not
    committed counts from `starts`).

    Every group's committed offsets are read before any end offset. A group commits only after it published
    what its batch produced, so ends read afterwards hold everything the groups read so far have produced:
    a group that reads another's output (qc's tally group over what the items group publishes to
    qc.evidence) cannot show lag 0 while that output is still on its way to it. Read the other way round, the
    items group's last batch could publish and commit between the two reads, and the tally group, busy with
    that batch's facts (a label-error pass takes seconds), looked caught up against the older ends
    (bench/replay.py snapshotted qc's state before the pass had written anything).
    """
    offsets = {group: {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group)).items()}
               for group in partitions}
    every = sorted({tp for tps in partitions.values() for tp in tps})
    ends = await consumer.end_offsets(every) if every else {}
    return {group: sum(ends[tp] - (offsets[group][tp] if offsets[group].get(tp, -1) >= 0 else starts[tp])
                       for tp in tps) for group, tps in partitions.items()}


async def consumer_lag(settings: CommonSettings, service: str,
                       topics: dict[str, Sequence[str]] | None = None) -> dict[str, int]:
    """Records not yet consumed per consumer group of the service (end offset minus committed offset).

    The broker only knows the topics of a group from its commits; `topics` (group -> short topic names) adds
    the ones a group should read, so a group that has committed nothing yet counts its whole backlog.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="labelmesh-replay")
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        partitions: dict[str, list[TopicPartition]] = {}
        for group in await service_groups(admin, settings, service):
            names = {tp.topic for tp in await committed(admin, group)}
            names |= {settings.topic(t) for t in (topics or {}).get(group, ())}
            partitions[group] = await topic_partitions(settings.kafka_bootstrap, sorted(names)) if names else []
        every = sorted({tp for tps in partitions.values() for tp in tps})
        starts = await consumer.beginning_offsets(every) if every else {}
        return await group_lags(admin, consumer, partitions, starts)
    finally:
        await consumer.stop()
        await admin.close()


async def _targets(consumer: AIOKafkaConsumer, partitions: list[TopicPartition],
                   since: datetime | None, to_end: bool = False) -> dict[TopicPartition, int]:
    if to_end:
        return await consumer.end_offsets(partitions)
    if since is None:
        return await consumer.beginning_offsets(partitions)
    found = await consumer.offsets_for_times({tp: to_ms(since) for tp in partitions})
    ends = await consumer.end_offsets(partitions)
    return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in partitions}


async def reset_group(settings: CommonSettings, group: str, topics: set[str],
                      since: datetime | None, to_end: bool = False) -> dict[TopicPartition, int]:
    """Commit, for every partition of the topics, the offset to restart from (the group must be empty): the first
    record at or after `since`, the beginning without it, or the end (`to_end`)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                                enable_auto_commit=False, client_id="labelmesh-replay")
    await consumer.start()
    try:
        partitions = await topic_partitions(settings.kafka_bootstrap, sorted(topics))
        # Manual assignment: this consumer never joins the group, it only commits on its behalf; the broker
        # rejects the commit if the group has live members.
        consumer.assign(partitions)
        targets = await _targets(consumer, partitions, since, to_end)
        await consumer.commit({tp: OffsetAndMetadata(offset, "labelmesh replay") for tp, offset in targets.items()})
        return targets
    finally:
        await consumer.stop()


async def drop_projections(settings: CommonSettings, service: str, since: datetime | None) -> tuple[list[str], int]:
    """Without since: drop every collection of the service's database. With since: remove recent inbox entries."""
    mongo: AsyncMongoClient = AsyncMongoClient(settings.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=10_000)
    try:
        db = mongo[settings.database_name(service)]
        if since is not None:
            result = await Inbox(db).collection.delete_many({"at": {"$gte": since}})
            return [], result.deleted_count
        names = sorted(n for n in await db.list_collection_names() if not n.startswith("system."))
        # Collection by collection: FerretDB 1.24 can hang dropping a whole database that holds GridFS.
        for name in names:
            await db.drop_collection(name)
        return names, 0
    finally:
        await mongo.close()


async def replay_service(settings: CommonSettings, service: str, since: datetime | None = None) -> ReplayReport:
    """Prepare a stopped service to rebuild its state from the topics on its next start."""
    if service in NOT_REPLAYABLE:
        raise ReplayRefused(f"{service}: {NOT_REPLAYABLE[service]}")
    if service not in REPLAYABLE:
        raise ReplayRefused(f"unknown service {service!r}; one of {', '.join(REPLAYABLE)}")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="labelmesh-replay")
    await admin.start()
    try:
        groups = await service_groups(admin, settings, service)
        busy = await active_members(admin, groups)
        if busy:
            raise ReplayRefused(
                f"{service} is running ({', '.join(f'{g}: {n} member(s)' for g, n in busy.items())}); "
                "stop every instance of it before replaying"
            )
        topics = {g: {tp.topic for tp in await committed(admin, g)} for g in groups}
    finally:
        await admin.close()
    report = ReplayReport(service)
    republished = {settings.topic(t) for t in REPUBLISHED.get(service, ())}
    # Drop first: if the reset then failed, a restart would replay nothing into an empty database, and a
    # second `replay` fixes that; the other order could leave old state with rewound offsets half done.
    report.dropped, report.inbox_removed = await drop_projections(settings, service, since)
    for group, group_topics in topics.items():
        # A group with no committed offsets has consumed nothing: it starts from the beginning anyway.
        if group_topics:
            targets = await reset_group(settings, group, group_topics, since,
                                        to_end=since is None and group_topics <= republished)
            report.groups[group] = {f"{tp.topic}[{tp.partition}]": off for tp, off in sorted(targets.items())}
        else:
            report.groups[group] = {}
    return report


# --- dead letters ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Redrive:
    dead_letter_id: str
    topic: str
    partition: int
    offset: int
    consumer: str
    reason: str


def select_dead_letters(letters: Sequence[DeadLetter], *, consumer: str | None = None, topic: str | None = None,
                        since: datetime | None = None) -> list[DeadLetter]:
    """Dead letters to re-drive: filtered, and each original record once (several consumers may have failed it)."""
    chosen: list[DeadLetter] = []
    seen: set[tuple[str, int, int]] = set()
    for letter in letters:
        if consumer is not None and letter.consumer != consumer:
            continue
        if topic is not None and letter.topic != topic:
            continue
        if since is not None and letter.occurred_at < since:
            continue
        origin = (letter.topic, letter.partition, letter.offset)
        if origin in seen:
            continue
        seen.add(origin)
        chosen.append(letter)
    return chosen


async def read_dead_letters(settings: CommonSettings, group: str | None) -> tuple[list[DeadLetter], dict]:
    """Dead letters not yet re-driven by this group (all of them when group is None), and the offsets to commit."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=16 * 1024 * 1024, client_id="labelmesh-redrive")
    await consumer.start()
    try:
        partitions = await topic_partitions(settings.kafka_bootstrap, [settings.topic(DeadLetter.TOPIC)])
        consumer.assign(partitions)
        if group is None:
            await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        letters: list[DeadLetter] = []
        while True:
            positions = {tp: await consumer.position(tp) for tp in partitions}
            if all(positions[tp] >= ends[tp] for tp in partitions):
                break
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for record in records:
                    if record.offset < ends[tp]:
                        letters.append(DeadLetter.model_validate_json(record.value))
        return letters, {tp: ends[tp] for tp in partitions}
    finally:
        await consumer.stop()


async def redrive_dead_letters(
    settings: CommonSettings, *, consumer: str | None = None, topic: str | None = None, since: datetime | None = None,
    dry_run: bool = False, all_letters: bool = False,
) -> list[Redrive]:
    """Publish dead-lettered originals (their exact bytes and key) to their original topic again.

    Progress is kept in the consumer group `<namespace>.redrive`, so each dead letter is re-driven once; an
    event that fails again comes back as a new dead letter. `all_letters` ignores that progress. Consumers
    that had already handled the event drop the copy (same event id in their inbox).
    """
    group = None if all_letters else settings.consumer_group("redrive")
    letters, ends = await read_dead_letters(settings, group)
    chosen = select_dead_letters(letters, consumer=consumer, topic=topic, since=since)
    done = [Redrive(d.dead_letter_id, d.topic, d.partition, d.offset, d.consumer, d.reason) for d in chosen]
    if dry_run:
        return done
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True,
                                max_request_size=16 * 1024 * 1024, client_id="labelmesh-redrive")
    await producer.start()
    try:
        for letter in chosen:
            original = base64.b64decode(letter.original_b64)
            await producer.send_and_wait(
                letter.topic, original, key=letter.key.encode() if letter.key is not None else None,
                headers=[("redriven-from", letter.dead_letter_id.encode()),
                         ("original-sha256", hashlib.sha256(original).hexdigest().encode())],
            )
    finally:
        await producer.stop()
    if group is not None:
        committer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                                     enable_auto_commit=False, client_id="labelmesh-redrive")
        await committer.start()
        try:
            committer.assign(list(ends))
            await committer.commit({tp: OffsetAndMetadata(off, "re-driven") for tp, off in ends.items()})
        finally:
            await committer.stop()
    return done


def run(service: str | None, *, since: str | None, dead_letters: bool, consumer: str | None, topic: str | None,
        dry_run: bool, all_letters: bool) -> int:
    """The `labelmesh replay` command; returns the exit status."""
    import asyncio
    import json

    from labelmesh.streams import check_topics, parse_time

    settings = CommonSettings()
    moment = parse_time(since) if since else None
    if dead_letters:
        if service is not None:
            raise ReplayRefused("give either a service or --dead-letters (with --consumer SERVICE to narrow it)")
        topic_name = settings.topic(check_topics([topic])[0]) if topic else None
        group = settings.consumer_group(consumer) if consumer else None
        done = asyncio.run(redrive_dead_letters(settings, consumer=group, topic=topic_name, since=moment,
                                                dry_run=dry_run, all_letters=all_letters))
        for r in done:
            print(json.dumps({"dead_letter_id": r.dead_letter_id, "topic": r.topic, "partition": r.partition,
                              "offset": r.offset, "consumer": r.consumer, "reason": r.reason,
                              "redriven": not dry_run}))
        print(f"{'would re-drive' if dry_run else 're-drove'} {len(done)} dead letter(s)")
        return 0
    if service is None:
        raise ReplayRefused("name a service to replay, or --dead-letters")
    report = asyncio.run(replay_service(settings, service, moment))
    if moment is None:
        print(f"{service}: dropped {len(report.dropped)} collection(s): {', '.join(report.dropped) or 'none'}")
    else:
        print(f"{service}: kept its state; removed {report.inbox_removed} inbox entries recorded since {moment}")
    for group, offsets in report.groups.items():
        where = ", ".join(f"{tp}@{off}" for tp, off in offsets.items()) or "no committed offsets (starts at the beginning)"
        print(f"  {group} -> {where}")
    print(f"start {service} now: it rebuilds its state from the topics")
    return 0
