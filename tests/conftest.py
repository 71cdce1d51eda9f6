"""Shared fixtures: integration and end-to-end tests need the real Kafka broker and FerretDB (deploy/local/up.sh)."""

from __future__ import annotations

import asyncio
import socket
import warnings
from collections.abc import AsyncIterator

import pytest
from aiokafka.errors import KafkaError

from labelmesh.infra import delete_topics
from labelmesh.runtime.settings import CommonSettings
from tests.kafka_helpers import Env, new_env


def _reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def infrastructure() -> CommonSettings:
    """The real broker and database must be up; a missing one is an error, never a skip."""
    settings = CommonSettings()
    mongo_host = settings.mongo_uri.split("//", 1)[1].split("/", 1)[0]
    missing = [name for name, addr in (("Kafka", settings.kafka_bootstrap), ("FerretDB", mongo_host))
               if not _reachable(addr)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not reachable: run `bash deploy/local/up.sh` first", pytrace=False)
    return settings


@pytest.fixture
async def env(infrastructure: CommonSettings) -> AsyncIterator[Env]:
    """A fresh namespace and topic prefix. Its topics are deleted afterwards: the broker keeps heap per partition,
    and a suite's worth of namespaces (~40 partitions each) exhausted a 512 MB broker in a long session. Its
    databases are left in place (FerretDB 1.24 can stall dropping a database with a GridFS bucket, and every run
    uses new names, so nothing leaks between tests)."""
    env = await new_env()
    yield env
    try:
        await delete_topics(env.bootstrap, env.prefix)
    except KafkaError as exc:  # cleanup only: the test's own verdict stands
        warnings.warn(f"topics of {env.namespace} not deleted: {exc!r}", stacklevel=1)


async def eventually(check, timeout: float = 30.0, interval: float = 0.2):  # type: ignore[no-untyped-def]
    """Poll an async check until it returns a truthy value; fail with the last value on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        await asyncio.sleep(interval)
