"""Exactly-once effects on at-least-once delivery: qc's real handler, behind the real inbox, on FerretDB.

Hypothesis chooses how a stream reaches qc: any interleaving of its topics (one item's ingested, routed and
submitted events travel on three topics, so they may arrive in any order relative to each other, while each
topic keeps one key's events in order, as Kafka does), batch boundaries, duplicates in the log (a producer
retry writes the same event twice), redelivered batches (a commit lost in a rebalance), and crashes in the
middle of a batch after some writes but before the inbox and the offsets recorded it. The final state must
equal the state after one clean in-order delivery (the canonical digest of every collection, processing
times excluded, see labelmesh.state_digest).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from labelmesh.runtime.service import ServiceRuntime
from labelmesh.state_digest import database_digest
from schemas.events import (
    Envelope,
    EvidenceKind,
    ItemIngested,
    ItemRouted,
    LabelScore,
    LabelSubmitted,
    ProjectConfigured,
    QcEvidence,
    QcFlagged,
    TextPayload,
    Thresholds,
    Tier,
    parse_event,
)
from schemas.keys import annotator_key
from services.qc.app import create_app
from services.qc.evidence import fact
from services.qc.settings import QcSettings
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration
PROJECT = "idem"
LABELS = ("a", "b", "c")


@dataclass(frozen=True)
class Record:
    """What the bus reads from a consumer record."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes


def _stream() -> list[Envelope]:
    out: list[Envelope] = []

    def item(i: str, **kw: object) -> None:
        out.append(ItemIngested(producer="test", project=PROJECT, item_id=i, payload=TextPayload(text=i), **kw))

    def routed(i: str, tier: Tier, required: int, **kw: object) -> None:
        out.append(ItemRouted(producer="test", project=PROJECT, item_id=i, tier=tier, required_annotators=required,
                              top_k=(LabelScore(label="a", probability=0.9),), thresholds=Thresholds(), **kw))

    def vote(i: str, annotator: str, label: str, role: str = "annotator") -> None:
        out.append(LabelSubmitted(producer="test", project=PROJECT, item_id=i, task_id=f"t-{i}", role=role,
                                  annotator_id=annotator, label=label, time_spent_ms=700, guideline_version=1,
                                  idempotency_key=f"{i}/{annotator}"))

    item("trusted", trusted_label="b")
    item("auto")
    routed("auto", Tier.AUTO, 0)
    item("spot")
    routed("spot", Tier.AUTO, 1, spot_check=True)
    vote("spot", "ann1", "b")
    item("single")
    routed("single", Tier.SINGLE, 1)
    vote("single", "ann2", "a")
    item("agree")
    routed("agree", Tier.MULTI, 3)
    for k in range(3):
        vote("agree", f"ann{k}", "c")
    item("split")
    routed("split", Tier.MULTI, 3)
    for k, label in enumerate(LABELS):
        vote("split", f"ann{k}", label)
    vote("split", "exp1", "b", role="expert")
    item("expert")
    routed("expert", Tier.EXPERT, 1)
    vote("expert", "exp1", "c", role="expert")
    return out


CONFIG = ProjectConfigured(producer="test", project=PROJECT, labels=LABELS, guideline_version=1)
STREAM = _stream()


class Qc:
    """A qc service whose consumption we drive by hand, through the bus's own decode-inbox-handle-mark path."""

    def __init__(self, env: Env, namespace: str) -> None:
        self.env = env
        self.runtime: ServiceRuntime = create_app(
            QcSettings(kafka_bootstrap=env.bootstrap, mongo_uri=env.mongo_uri, namespace=namespace,
                       topic_prefix=env.prefix, http_port=0, retry_backoff_s=0.01)
        )
        self.offsets: dict[str, itertools.count[int]] = defaultdict(itertools.count)

    def record(self, event: Envelope) -> Record:
        topic = self.env.prefix + event.TOPIC
        return Record(topic, 0, next(self.offsets[topic]), event.key.encode(), event.model_dump_json().encode())

    async def __aenter__(self) -> Qc:  # noqa: PYI034 - a test helper, not a base class
        await self.runtime.bus.broker.connect()  # publishing only; nothing subscribes
        await self.runtime.bus._handle_records([self.record(CONFIG)], self.runtime.component.catalog.store)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runtime.bus.broker.stop()
        await self.runtime.mongo.close()

    async def deliver(self, records: list[Record]) -> None:
        await self.runtime.bus._handle_records(list(records), self.runtime.component.on_events)

    async def crash_midway(self, records: list[Record], applied: int) -> None:
        """The process dies after the handler wrote the effects of `applied` events, before its batch finished."""
        bus = self.runtime.bus
        events = [_decode(r, bus.settings.topic_prefix) for r in records]
        todo = (await bus.inbox.begin(events)).todo  # claimed and in flight, as the bus leaves them mid-batch
        if todo[:applied]:
            await self.runtime.component.on_events(todo[:applied])


def _decode(record: Record, prefix: str) -> Envelope:
    from labelmesh.runtime.bus import decode

    return decode(record, prefix)


async def _reference(env: Env, namespace: str) -> dict[str, str]:
    async with Qc(env, namespace) as qc:
        await qc.deliver([qc.record(e) for e in STREAM])
        return await database_digest(qc.runtime.db)


@st.composite
def schedules(draw: st.DrawFn) -> list[tuple[str, list[int], int]]:
    """Batches of stream positions: an interleaving of the (topic, key) queues, duplicates, and a fate per batch."""
    queues: dict[tuple[str, str], list[int]] = defaultdict(list)
    for n, event in enumerate(STREAM):
        queues[(event.TOPIC, event.key)].append(n)
    heads = {q: 0 for q in queues}
    delivered: list[int] = []
    plan: list[tuple[str, list[int], int]] = []
    while any(heads[q] < len(queues[q]) for q in queues):
        batch: list[int] = []
        for _ in range(draw(st.integers(1, 6))):
            open_queues = sorted(q for q in queues if heads[q] < len(queues[q]))
            if not open_queues:
                break
            q = draw(st.sampled_from(open_queues))
            batch.append(queues[q][heads[q]])
            heads[q] += 1
            if delivered and draw(st.integers(0, 9)) == 0:  # an earlier event written to the log again
                batch.append(draw(st.sampled_from(delivered)))
        delivered.extend(batch)
        fate = draw(st.sampled_from(["ok", "ok", "redelivered", "crash"]))
        plan.append((fate, batch, draw(st.integers(0, len(batch)))))
    return plan


def test_qc_final_state_ignores_redelivery_duplication_and_reordering(env: Env) -> None:
    namespaces = (f"{env.namespace}x{n}" for n in itertools.count())
    expected = asyncio.run(_reference(env, next(namespaces)))
    assert expected["items"] and expected["processed_events"]

    # No shrinking phase: each example costs a database; the failing plan is printed as drawn.
    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow],
              phases=[Phase.explicit, Phase.reuse, Phase.generate])
    @given(plan=schedules())
    def check(plan: list[tuple[str, list[int], int]]) -> None:
        async def run() -> dict[str, str]:
            async with Qc(env, next(namespaces)) as qc:
                for fate, batch, applied in plan:
                    records = [qc.record(STREAM[n]) for n in batch]
                    if fate == "crash":
                        await qc.crash_midway(records, applied)
                    await qc.deliver(records)
                    if fate == "redelivered":
                        await qc.deliver(records)
                return await database_digest(qc.runtime.db)

        assert asyncio.run(run()) == expected

    check()


def test_a_golden_answer_redelivered_after_a_crash_counts_once_and_is_not_dead_lettered(env: Env) -> None:
    gold = ItemIngested(producer="test", project=PROJECT, item_id="g1", payload=TextPayload(text="g"), golden_label="a")
    answer = LabelSubmitted(producer="test", project=PROJECT, item_id="g1", task_id="t-g1", annotator_id="ann1",
                            label="b", time_spent_ms=500, guideline_version=1, idempotency_key="g1/ann1", golden=True)

    async def run() -> tuple[dict, int]:
        async with Qc(env, f"{env.namespace}gold") as qc:
            await qc.deliver([qc.record(gold)])
            records = [qc.record(answer)]
            await qc.crash_midway(records, 1)  # counted, then killed before the batch finished
            await qc.deliver(records)
            # Both attempts told the owner of ann1's statistics; it gets each announcement on its own.
            published = [parse_event(json.dumps(r)) for r in await env.read_all(QcEvidence.TOPIC)]
            golden = [e for e in published if isinstance(e, QcEvidence) and e.kind is EvidenceKind.GOLDEN]
            assert len(golden) == 2 and golden[0].event_id == golden[1].event_id, "the same fact, announced twice"
            for event in published:
                await qc.runtime.bus._handle_records([qc.record(event)], qc.runtime.component.on_evidence)
            stats = await qc.runtime.db["annotators"].find_one({"_id": annotator_key(PROJECT, "ann1")})
            handled = await qc.runtime.db["processed_events"].count_documents({"_id": answer.event_id})
            return stats, handled

    stats, handled = asyncio.run(run())
    assert (stats["golden_n"], stats["golden_correct"]) == (1, 0)
    assert handled == 1, "the redelivered answer was handled (a dead-lettered one is not marked in the inbox)"


def test_statistics_whose_facts_were_recorded_by_a_killed_attempt_are_counted_from_the_facts(env: Env) -> None:
    """The owner of an annotator's statistics dies after inserting the facts' rows, before adding them up: the
    batch comes again as recovering and the tally is counted from every row, once; a later redelivery adds nothing."""
    misses = [fact(PROJECT, "bad", EvidenceKind.GOLDEN, f"answer-{i}", f"g{i}", False) for i in range(12)]

    async def run() -> tuple[dict, list]:
        async with Qc(env, f"{env.namespace}tally") as qc:
            bus, tallies = qc.runtime.bus, qc.runtime.component
            await qc.runtime.bus._handle_records([qc.record(e) for e in misses[:4]], tallies.on_evidence)
            records = [qc.record(e) for e in misses[4:]]
            claim = await bus.inbox.begin([_decode(r, bus.settings.topic_prefix) for r in records])
            await tallies.store.record_facts([(e.key, e) for e in claim.todo])  # ...and killed here
            await bus._handle_records(records, tallies.on_evidence)
            await bus._handle_records(records, tallies.on_evidence)  # a lost commit: delivered once more
            stats = await qc.runtime.db["annotators"].find_one({"_id": annotator_key(PROJECT, "bad")})
            flags = [r for r in await env.read_all(QcFlagged.TOPIC) if r["kind"] == "annotator_suspended"]
            return stats, flags

    stats, flags = asyncio.run(run())
    assert (stats["golden_n"], stats["golden_correct"], stats["suspended"]) == (12, 0, True)
    assert [(f["subject_id"], f["evidence"]["golden_n"]) for f in flags] == [("bad", 10)]


def test_statistics_stay_exact_after_a_crash_when_the_older_facts_rows_are_gone(env: Env) -> None:
    """A tally recovered after a crash is counted from its own document (its recent_facts), not from every row
    the key ever had: those rows only guard against duplicates and may be pruned (issue 21, item 4)."""
    answers = [fact(PROJECT, "ann", EvidenceKind.GOLDEN, f"answer-{i}", f"g{i}", i % 2 == 0) for i in range(9)]

    async def run() -> dict:
        async with Qc(env, f"{env.namespace}bounded") as qc:
            bus, tallies = qc.runtime.bus, qc.runtime.component
            await bus._handle_records([qc.record(e) for e in answers[:5]], tallies.on_evidence)
            await tallies.store.evidence.delete_many({})  # the older rows, pruned
            records = [qc.record(e) for e in answers[5:]]
            claim = await bus.inbox.begin([_decode(r, bus.settings.topic_prefix) for r in records])
            await tallies.store.record_facts([(e.key, e) for e in claim.todo[:2]])  # ...and killed here
            await bus._handle_records(records, tallies.on_evidence)
            await bus._handle_records(records, tallies.on_evidence)  # a lost commit: delivered once more
            return await qc.runtime.db["annotators"].find_one({"_id": annotator_key(PROJECT, "ann")})

    stats = asyncio.run(run())
    assert (stats["golden_n"], stats["golden_correct"]) == (9, 5)
    assert stats["recent_facts"] == [a.event_id for a in answers]
