"""Two gateway processes and 50 annotators racing for the same slots, over real gRPC, Kafka and FerretDB."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest
from pymongo import AsyncMongoClient

from labelmesh.client import GatewayClient
from schemas.events import Tier
from schemas.rpc import gateway_pb2 as pb
from tests.conftest import eventually
from tests.gateway_helpers import ADMIN, LABELS, GatewayProcess, routed
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration
PROJECT = "race"
ANNOTATORS = 50
ITEMS = 200
MULTI = 3  # annotators a multi-tier item needs


def _required(n: int) -> int:
    return MULTI if n % 2 else 1


async def test_two_replicas_never_fill_a_slot_twice_nor_give_anyone_an_item_twice(
        env: Env, gateway_processes: Callable[[int], list[GatewayProcess]]) -> None:
    replicas = gateway_processes(2)
    admins = [GatewayClient(r.target, ADMIN) for r in replicas]
    mongo = AsyncMongoClient(env.mongo_uri, tz_aware=True)
    db = mongo[f"{env.namespace}_gateway"]
    users: list[GatewayClient] = []
    try:
        await eventually(lambda: _serving(replicas), timeout=120)
        await admins[0].configure_project(PROJECT, LABELS, guidelines="v1")
        names = [f"a{i:02d}" for i in range(ANNOTATORS)]
        tokens = [await admins[0].create_annotator(name) for name in names]
        # Every annotator talks to both replicas, turn about, as a load balancer would spread their calls.
        users = [admins[i % 2].as_user(token) for i, token in enumerate(tokens)]
        others = [admins[(i + 1) % 2].as_user(token) for i, token in enumerate(tokens)]
        items = [f"r{n:03d}" for n in range(ITEMS)]
        await admins[1].ingest_items([pb.IngestItem(project=PROJECT, item_id=i, text=f"text {i}") for i in items])
        await env.publish_events([routed(i, Tier.MULTI if _required(n) > 1 else Tier.SINGLE, _required(n),
                                         project=PROJECT, probability=0.5 + n / 1000)
                                  for n, i in enumerate(items)])
        slots = sum(_required(n) for n in range(ITEMS))
        await eventually(lambda: _all_known(replicas, ITEMS))

        received: dict[str, list[str]] = {name: [] for name in names}

        async def work(n: int) -> None:
            turn = 0
            while True:
                client = (users, others)[turn % 2][n]
                turn += 1
                task = await client.lease(PROJECT)
                if task is None:
                    return
                received[names[n]].append(task.item_id)
                await client.submit(task.task_id, LABELS[0], key=f"{names[n]}-{task.item_id}")

        await asyncio.gather(*(work(n) for n in range(ANNOTATORS)))

        for name, got in received.items():
            assert len(got) == len(set(got)), f"{name} was given an item twice: {sorted(got)}"
        per_item = Counter(i for got in received.values() for i in got)
        assert per_item == {i: _required(n) for n, i in enumerate(items)}, "every slot taken exactly once"

        stored = [d async for d in db["claims"].find({"state": {"$exists": True}})]
        by_task = Counter(d["task_id"] for d in stored)
        required = {t["_id"]: t["required"] async for t in db["tasks"].find({"project": PROJECT})}
        assert len(stored) == slots and all(by_task[t] == required[t] for t in required)
        assert all(d["state"] == "submitted" for d in stored)
        pairs = Counter((d["task_id"], d["annotator"]) for d in stored)
        assert max(pairs.values()) == 1, "one annotator in two slots of one task"
        assert await db["tasks"].count_documents({"project": PROJECT, "status": "done"}) == ITEMS
        assert await db["submissions"].count_documents({}) == slots
    finally:
        for client in admins:
            await client.close()
        await mongo.close()


async def _serving(replicas: list[GatewayProcess]) -> bool:
    return all([await asyncio.to_thread(r.process.ready) for r in replicas])


async def _all_known(replicas: list[GatewayProcess], n: int) -> bool:
    """Both replicas' indexes hold every open task (each heard every item.routed)."""
    return all([await asyncio.to_thread(r.metric, "labelmesh_gateway_candidate_tasks") == n for r in replicas])
