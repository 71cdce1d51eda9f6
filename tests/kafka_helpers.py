"""Test helpers that talk to the real broker: an isolated environment per test, raw publishing, reading topics."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient

from labelmesh.infra import create_topics
from labelmesh.runtime.settings import CommonSettings
from schemas.events import Envelope


@dataclass
class Env:
    """A namespace (databases, consumer groups) and topic prefix of its own, on the shared real cluster."""

    namespace: str
    bootstrap: str
    mongo_uri: str

    @property
    def prefix(self) -> str:
        return f"{self.namespace}."

    @property
    def golden_salt(self) -> str:
        """The gateway's secret salt in this environment (a gateway refuses to start without one)."""
        return f"salt-{self.namespace}"

    def settings(self, cls: type[CommonSettings], **overrides: Any) -> Any:
        secret = {"golden_salt": self.golden_salt} if "golden_salt" in cls.model_fields else {}
        return cls(**{"kafka_bootstrap": self.bootstrap, "mongo_uri": self.mongo_uri, "namespace": self.namespace,
                      "topic_prefix": self.prefix, "http_port": 0, "retry_backoff_s": 0.05, **secret, **overrides})

    def environ(self) -> dict[str, str]:
        return {"LABELMESH_KAFKA_BOOTSTRAP": self.bootstrap, "LABELMESH_MONGO_URI": self.mongo_uri,
                "LABELMESH_NAMESPACE": self.namespace, "LABELMESH_TOPIC_PREFIX": self.prefix,
                "LABELMESH_GATEWAY_GOLDEN_SALT": self.golden_salt}

    async def publish(self, topic: str, value: bytes, key: str = "k") -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(self.prefix + topic, value, key=key.encode())
        finally:
            await producer.stop()

    async def publish_events(self, events: list[Envelope]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, max_request_size=16 * 1024 * 1024)
        await producer.start()
        try:
            for e in events:
                await producer.send_and_wait(self.prefix + e.TOPIC, e.model_dump_json().encode(), key=e.key.encode())
        finally:
            await producer.stop()

    async def read(
        self, topic: str, until: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Read a topic from the start until `until(records)` holds; fails the test on timeout."""
        consumer = AIOKafkaConsumer(self.prefix + topic, bootstrap_servers=self.bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    group_id=None, fetch_max_bytes=32 * 1024 * 1024,
                                    max_partition_fetch_bytes=16 * 1024 * 1024)
        await consumer.start()
        records: list[dict[str, Any]] = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while not until(records):
                if loop.time() > deadline:
                    raise AssertionError(f"timed out after {timeout}s reading {topic}: got {len(records)} records")
                batch = await consumer.getmany(timeout_ms=500)
                for msgs in batch.values():
                    records.extend(json.loads(m.value) for m in msgs)
            return records
        finally:
            await consumer.stop()

    async def read_all(self, topic: str) -> list[dict[str, Any]]:
        """Everything on a topic right now (up to its current end offsets)."""
        consumer = AIOKafkaConsumer(self.prefix + topic, bootstrap_servers=self.bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
                                    max_partition_fetch_bytes=16 * 1024 * 1024)
        await consumer.start()
        records: list[dict[str, Any]] = []
        try:
            partitions = consumer.assignment()
            while not partitions:
                await asyncio.sleep(0.05)
                partitions = consumer.assignment()
            end = await consumer.end_offsets(list(partitions))
            while True:
                positions = [await consumer.position(tp) for tp in end]
                if all(pos >= end[tp] for pos, tp in zip(positions, end, strict=True)):
                    break
                for msgs in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(json.loads(m.value) for m in msgs)
            return records
        finally:
            await consumer.stop()

    def mongo(self) -> AsyncMongoClient:
        return AsyncMongoClient(self.mongo_uri, tz_aware=True)


async def new_env() -> Env:
    base = CommonSettings()
    env = Env(f"t{uuid.uuid4().hex[:10]}", base.kafka_bootstrap, base.mongo_uri)
    await create_topics(env.bootstrap, env.prefix)
    return env
