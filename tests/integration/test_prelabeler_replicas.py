"""Two prelabeler processes in one consumer group: a new model reaches both, and both pre-label with it."""

from __future__ import annotations

import asyncio
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from labelmesh.stack import ServiceProcess
from schemas.events import ProjectConfigured
from tests.conftest import eventually
from tests.gateway_helpers import free_port
from tests.kafka_helpers import Env
from tests.prelabeler_helpers import LABELS, item_event, model_event

pytestmark = pytest.mark.integration


@pytest.fixture
def replicas(env: Env, tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    """Two `labelmesh run prelabeler` processes (stub encoder) in env's namespace, stopped after the test."""
    started = []
    for i in range(2):
        proc = ServiceProcess("prelabeler", free_port(), tmp_path / f"prelabeler{i}.log")
        proc.start({**os.environ, **env.environ(), "LABELMESH_PRELABELER_ENCODER": "hashing",
                    "LABELMESH_PRELABELER_HTTP_PORT": str(proc.port), "LABELMESH_PRELABELER_MAX_WAIT_MS": "20",
                    "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
        started.append(proc)
    try:
        yield started
    finally:
        for proc in started:
            proc.stop()


def _metric(proc: ServiceProcess, name: str, project: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and s.labels.get("project") == project)


async def test_a_new_model_reaches_both_processes(env: Env, replicas: list[ServiceProcess]) -> None:
    await env.publish_events([ProjectConfigured(producer="test", project="pl", labels=LABELS, guideline_version=1),
                              model_event(1)])

    async def serving(version: int) -> bool:
        for proc in replicas:
            if proc.process is not None and proc.process.poll() is not None:
                raise AssertionError(proc.log_path.read_text(errors="replace")[-3000:])
        try:
            versions = await asyncio.gather(
                *(asyncio.to_thread(_metric, p, "labelmesh_prelabeler_model_version", "pl") for p in replicas))
        except OSError:  # not listening yet
            return False
        return all(v == version for v in versions)

    admin = AIOKafkaAdminClient(bootstrap_servers=env.bootstrap)
    await admin.start()

    async def both_in_the_group() -> bool:
        (response,) = await admin.describe_consumer_groups([f"{env.namespace}.prelabeler"])
        (group,) = response.to_object()["groups"]
        return group["state"] == "Stable" and len(group["members"]) == 2

    try:
        await eventually(lambda: serving(1), timeout=180)
        await eventually(both_in_the_group, timeout=60)
    finally:
        await admin.close()
    await env.publish_events([model_event(2)])
    await eventually(lambda: serving(2), timeout=60)

    # Enough items that both members of the group get some, whichever partitions each holds.
    items = [item_event(f"after{i}", "hello there, good morning") for i in range(30)]
    await env.publish_events(items)
    wanted = {item.item_id for item in items}
    out = await env.read("item.prelabeled", lambda rs: wanted <= {r["item_id"] for r in rs})
    assert {r["model_version"] for r in out if r["item_id"] in wanted} == {2}
    done = [await asyncio.to_thread(_metric, p, "labelmesh_prelabeler_items_total", "pl") for p in replicas]
    assert all(n >= 1 for n in done) and sum(done) >= len(items), done
