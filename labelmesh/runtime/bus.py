"""The services' Kafka bus: keyed publishing, batched at-least-once consumption, retries and dead letters."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiokafka import TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import BaseModel, ValidationError
from pymongo.errors import ConnectionFailure

from labelmesh.runtime.inbox import Inbox, recovering
from labelmesh.runtime.settings import CommonSettings
from schemas.events import EVENT_BY_TOPIC, DeadLetter, Envelope, parse_event

log = logging.getLogger(__name__)

BatchHandler = Callable[[list[Envelope]], Awaitable[None]]
# Per topic (without prefix), the lean model a broadcast's handler gets in place of the whole event: only the
# fields its in-memory state reads, validated with the event's own field definitions. It must carry `event_id`
# and `TOPIC`, and a `type` literal so that a record on the wrong topic is refused.
Projection = Mapping[str, type[BaseModel]]
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# Per partition, what the producer gathers into one record batch. aiokafka's default, 16 KiB, holds three
# or four item.prelabeled events (each carries its 384-float embedding, ~4 KB of JSON), so a chunk of 256
# went out as ~70 batches per partition, each validated, appended and indexed by the broker on its own.
PRODUCER_BATCH_BYTES = 1024 * 1024
# Failures of the infrastructure itself: retried until it is back, never dead-lettered.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ConnectionFailure, KafkaError, OSError, TimeoutError)


class PoisonEvent(Exception):
    """A handler's way to say one event can never be processed (the reason goes to the dead letter)."""

    def __init__(self, event: Envelope, reason: str) -> None:
        super().__init__(reason)
        self.event = event
        self.reason = reason


class BusMetrics:
    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.consumed = Counter(
            "labelmesh_events_consumed_total", "Events handled", ["service", "topic"], registry=registry
        )
        self.published = Counter(
            "labelmesh_events_published_total", "Events published", ["service", "topic"], registry=registry
        )
        self.duplicates = Counter(
            "labelmesh_events_duplicate_total", "Redelivered events skipped", ["service"], registry=registry
        )
        self.dead = Counter(
            "labelmesh_deadletters_total", "Events sent to the dead-letter topic", ["service", "topic"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "labelmesh_batch_seconds", "Time to handle one consumed batch", ["service"], registry=registry
        )
        # Where a batch's time goes: waiting for the process's other handlers, the inbox's records, the
        # handler itself (its publishing counted apart as well), so a slow stage points at its cause.
        self.phase_seconds = Histogram(
            "labelmesh_batch_phase_seconds", "Time per consumed batch by phase", ["service", "phase"],
            registry=registry,
        )
        self.service = service


async def _records_only(msg: Any) -> None:
    """FastStream's decoder, replaced: by default it json-loads every record's body for a handler argument
    that consume() does not take (it parses msg.raw_message itself, with the event's own schema). That
    second parse was 5% of the router's CPU in a stub burst (py-spy)."""
    return None


def decode(record: Any, prefix: str = "", projection: Projection | None = None) -> Envelope | BaseModel:
    """Parse one consumer record; raises ValueError/ValidationError with a reason.

    With a projection, the record is validated as its topic's lean model instead (see EventBus.subscribe)."""
    if record.value is None:
        raise ValueError("empty record value")
    if projection is not None:
        lean = projection.get(record.topic.removeprefix(prefix))
        if lean is None:
            raise ValueError(f"no projection for topic {record.topic!r}")
        return lean.model_validate_json(record.value)  # its `type` literal checks the event belongs on the topic
    event = parse_event(record.value)
    expected = EVENT_BY_TOPIC.get(record.topic.removeprefix(prefix))
    if expected is not None and not isinstance(event, expected):
        raise ValueError(f"event type {event.type!r} does not belong on topic {record.topic!r}")
    return event


class EventBus:
    """One per service process: a FastStream KafkaBroker plus the consumption rules every handler shares."""

    def __init__(self, settings: CommonSettings, service: str, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.service = service
        self.metrics = BusMetrics(registry, service)
        self.broker = KafkaBroker(
            settings.kafka_bootstrap,
            client_id=f"labelmesh-{service}",
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=PRODUCER_BATCH_BYTES,
            max_request_size=MAX_MESSAGE_BYTES,
            allow_auto_create_topics=False,
            middlewares=[KafkaPrometheusMiddleware(registry=registry, app_name=service, metrics_prefix="faststream")],
            logger=logging.getLogger(f"faststream.{service}"),
            log_level=logging.DEBUG,
        )
        self.inbox: Inbox | None = None
        self._exclusive = asyncio.Lock()
        self._subscribers: dict[str, Any] = {}

    async def publish(self, events: Sequence[Envelope]) -> None:
        """Send events keyed by their subject and wait until the broker has them all."""
        started = time.perf_counter()
        pending = []
        for event in events:
            pending.append(
                await self.broker.publish(
                    event.model_dump_json().encode(),
                    topic=self.settings.topic(event.TOPIC),
                    key=event.key.encode(),
                    headers={"event-type": event.type, "producer": self.service},
                    no_confirm=True,
                )
            )
            self.metrics.published.labels(self.service, event.TOPIC).inc()
        if pending:
            await asyncio.gather(*pending)
        self.metrics.phase_seconds.labels(self.service, "publish").observe(time.perf_counter() - started)

    async def dead_letter(self, record: Any, reason: str) -> None:
        letter = DeadLetter(
            consumer=self.settings.consumer_group(self.service),
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key.decode(errors="replace") if record.key else None,
            reason=reason[:2000],
            original_b64=base64.b64encode(record.value or b"").decode(),
        )
        log.warning("dead-lettered %s[%s]@%s: %s", record.topic, record.partition, record.offset, reason)
        self.metrics.dead.labels(self.service, record.topic).inc()
        await self.broker.publish(
            letter.model_dump_json().encode(), topic=self.settings.topic(DeadLetter.TOPIC), key=(letter.key or "").encode()
        )

    def subscribe(
        self,
        topics: Sequence[str],
        handler: BatchHandler,
        *,
        max_records: int = 500,
        batch_timeout_ms: int = 50,
        name: str | None = None,
        broadcast: bool = False,
        exclusive: bool = False,
        projection: Projection | None = None,
        fetch_min_bytes: int = 1,
        fetch_max_wait_ms: int = 500,
    ) -> None:
        """Consume topics in batches; offsets are committed only after the handler returned.

        A subscription with a group (the default) is shared by every replica of the service, and Kafka's
        range assignor gives each member the same partition numbers of every topic it reads: all item-keyed
        topics have the same partition count, so one item's documents have one writer at a time, whichever
        of the subscription's topics feeds them. The rule that makes this enough: handlers of different
        groups in one service (name=...) run concurrently, in one process or in several, so they write
        disjoint documents, or change a shared one only with single atomic operations ($inc, $max, a
        conditional find_one_and_update, a unique index). FerretDB 1.24 rewrites a whole document without
        isolation, so two groups writing the same document with read-then-write can lose an update.

        broadcast=True: every replica reads every partition from the start of the topic on each start (no
        group, no commits, no inbox), for facts every replica must know (model.updated, project.configured).
        Its handler changes only in-process state; a shared-group subscription writes the durable copy.

        projection (broadcast only): per topic, a lean model the handler gets instead of the whole event, for a
        broadcast that reads a few fields of every event of a busy topic on every replica. A record it cannot
        validate is dead-lettered like an undecodable event; the owned group still validates the whole event.

        fetch_min_bytes / fetch_max_wait_ms (aiokafka's, defaults kept): the broker answers a fetch once it holds
        this much or this long has passed. A broadcast of a busy topic on every replica pays a fetch and a handler
        call per small batch; a larger minimum gathers bigger batches, for at most fetch_max_wait_ms of delay.

        exclusive=True is a stopgap for handlers that still rely on the old per-process lock: those
        handlers never run at the same time within one process. It protects nothing across replicas.
        """
        if projection is not None and not broadcast:
            raise ValueError("a projection feeds in-memory state only: subscribe with broadcast=True")
        if projection is not None and set(topics) - set(projection):
            raise ValueError(f"no projection for topics {sorted(set(topics) - set(projection))}")
        group = None if broadcast else self.settings.consumer_group(name or self.service)
        label = name or self.service

        async def consume(msg: KafkaMessage) -> None:
            records = msg.raw_message if isinstance(msg.raw_message, tuple) else (msg.raw_message,)
            started = time.perf_counter()
            try:
                async with self._exclusive if exclusive else contextlib.nullcontext():
                    self.metrics.phase_seconds.labels(self.service, "lock_wait").observe(time.perf_counter() - started)
                    await self._handle_records(list(records), handler, use_inbox=not broadcast,
                                               projection=projection)
            except Exception:
                if broadcast:  # no group to commit to: rewind every partition of the batch in this process
                    await msg.nack()
                raise
            self.metrics.batch_seconds.labels(self.service).observe(time.perf_counter() - started)

        # NACK_ON_ERROR rewinds every partition of the batch to its first offset (FastStream >= 0.7.8), so
        # nothing is committed past an unhandled event. A broadcast has nothing to commit (MANUAL).
        subscriber = self.broker.subscriber(
            *(self.settings.topic(t) for t in topics),
            group_id=group,
            batch=True,
            max_records=max_records,
            batch_timeout_ms=batch_timeout_ms,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL if broadcast else AckPolicy.NACK_ON_ERROR,
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
            fetch_min_bytes=fetch_min_bytes,
            fetch_max_wait_ms=fetch_max_wait_ms,
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=min(3_000, self.settings.session_timeout_ms // 3),
            title=f"{self.service}:{','.join(topics)}{' (broadcast)' if broadcast else ''}",
            decoder=_records_only,
        )
        subscriber(consume)
        self._subscribers[f"{label}:broadcast" if broadcast else label] = subscriber

    async def reachable(self, timeout: float) -> bool:
        """Whether the broker answers, retried until `timeout`: a metadata request for no topic (Kafka's protocol
        v1+: an empty list names none), which still needs a live connection and an answer.

        Not faststream's broker.ping: its describe_cluster asks for the metadata of every topic in the cluster,
        and readiness asks every few seconds in every pod (the gateway's health watch every 5 s). On the shared
        local broker, 850 topics of old benchmark namespaces, one describe_cluster cost 29.4 CPU-ms in the caller
        (0.6% of a core at one call per 5 s) and this request 0.16 ms; a cluster shared with other teams is no
        smaller."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self.broker.config.admin_client.describe_topics([]), left)
                return True
            except Exception:  # noqa: BLE001 - not connected, refused, timed out: not reachable yet
                await asyncio.sleep(min(0.3, max(0.0, deadline - time.monotonic())))

    def assignment(self, name: str | None = None, broadcast: bool = False) -> set[TopicPartition]:
        """The partitions a running subscription holds now (topic names as on the broker)."""
        label = name or self.service
        subscriber = self._subscribers[f"{label}:broadcast" if broadcast else label]
        consumer = getattr(subscriber, "consumer", None)
        return set(consumer.assignment()) if consumer is not None else set()

    async def _handle_records(self, records: list[Any], handler: BatchHandler, use_inbox: bool = True,
                              projection: Projection | None = None) -> None:
        events: list[Envelope] = []
        origin: dict[str, Any] = {}
        for record in records:
            try:
                event = decode(record, self.settings.topic_prefix, projection)
            except (ValidationError, ValueError, UnicodeDecodeError) as exc:
                await self.dead_letter(record, f"undecodable event: {exc}")
                continue
            events.append(event)
            origin[event.event_id] = record
        if not events:
            return
        if self.inbox is None or not use_inbox:
            token = recovering.set(frozenset())  # what a re-run marks as recovering ends with this batch
            try:
                events = await self._run_with_retries(events, origin, handler)
            finally:
                recovering.reset(token)
        else:
            phase = time.perf_counter()
            claim = await self.inbox.begin(events)
            todo, interrupted = claim.todo, claim.recovering
            self.metrics.phase_seconds.labels(self.service, "inbox_begin").observe(time.perf_counter() - phase)
            self.metrics.duplicates.labels(self.service).inc(len(events) - len(todo))
            if interrupted:
                log.warning("%d events were being handled by an attempt that did not finish (a crash, or the "
                            "broker or database away); their stored effects are published again", len(interrupted))
            token = recovering.set(interrupted)
            phase = time.perf_counter()
            try:
                handled = await self._run_with_retries(todo, origin, handler) if todo else []
            finally:
                recovering.reset(token)
            self.metrics.phase_seconds.labels(self.service, "handler").observe(time.perf_counter() - phase)
            # Only what was handled stays claimed: a dead-lettered event must be accepted again when re-driven.
            phase = time.perf_counter()
            kept = {e.event_id for e in handled}
            await self.inbox.release([e for e in todo if e.event_id not in kept])
            await self.inbox.end(claim)
            self.metrics.phase_seconds.labels(self.service, "inbox_end").observe(time.perf_counter() - phase)
            events = handled
        for event in events:
            self.metrics.consumed.labels(self.service, event.TOPIC).inc()

    async def _run_with_retries(
        self, events: list[Envelope], origin: dict[str, Any], handler: BatchHandler
    ) -> list[Envelope]:
        """Run the handler; returns the events it handled (the others were dead-lettered).

        A poison event is dead-lettered at once and splits the batch: the events before it, which the failed
        attempt applied, are run again on their own (recovering, so what they stored is published), then the
        events after it as the next attempt. Running the whole rest of the batch again after each poison event
        handled a batch with k of them k times over (100 labels of an unknown project among 100 good ones:
        42 s in qc, each re-run also scanning for stored decisions to republish).
        """
        attempt = 0
        rerun = False
        handled: list[Envelope] = []
        outer = recovering.get()  # what the inbox found interrupted; a re-run adds only its own events to it
        while attempt < self.settings.max_attempts:
            if rerun:
                # A failed attempt may have stored decisions it never published: the re-run republishes them.
                recovering.set(outer | {e.event_id for e in events})
            rerun = True
            try:
                await handler(events)
                return handled + events
            except PoisonEvent as poison:
                at = next((i for i, e in enumerate(events) if e.event_id == poison.event.event_id), None)
                if at is None:  # not an event of this batch: a handler bug, retried and isolated like any other
                    attempt += 1
                    log.error("handler named poison event %s, which is not in its batch", poison.event.event_id)
                    continue
                await self.dead_letter(origin[poison.event.event_id], poison.reason)
                before, events = events[:at], events[at + 1:]
                if before:
                    token = recovering.set(outer | {e.event_id for e in before})
                    try:
                        handled += await self._run_with_retries(before, origin, handler)
                    finally:
                        recovering.reset(token)
                if not events:
                    return handled
            except TRANSIENT_ERRORS as exc:
                log.warning("infrastructure unavailable (%r); the batch will be redelivered", exc)
                await asyncio.sleep(self.settings.retry_backoff_s)
                raise
            except Exception:
                attempt += 1
                log.exception("batch of %d failed (attempt %d)", len(events), attempt)
                await asyncio.sleep(self.settings.retry_backoff_s * attempt)
        # The batch keeps failing: handle events one by one so only the poisonous ones are dead-lettered.
        recovering.set(outer | {e.event_id for e in events})
        for event in events:
            try:
                await handler([event])
                handled.append(event)
            except TRANSIENT_ERRORS:
                raise
            except PoisonEvent as poison:
                await self.dead_letter(origin[event.event_id], poison.reason)
            except Exception as exc:  # noqa: BLE001 - the reason travels with the dead letter
                await self.dead_letter(origin[event.event_id], f"handler failed: {exc!r}")
        return handled
