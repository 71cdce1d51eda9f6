"""Two router replicas in one namespace: each item routed once, thresholds learned by one owner, used by both."""

from __future__ import annotations

import numpy as np
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry

from labelmesh.replay import consumer_lag
from labelmesh.runtime.service import ServiceRuntime
from schemas.events import (
    ArtifactRef,
    ItemPrelabeled,
    LabelFinalized,
    LabelScore,
    ModelUpdated,
    ProjectConfigured,
    Provenance,
    Thresholds,
)
from services.router.app import create_app
from services.router.settings import RouterSettings
from tests.conftest import eventually
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration
LABELS = ("a", "b", "c")
PROJECT = "rr"


def _vec(seed: int) -> tuple[float, ...]:
    v = np.random.default_rng(seed).normal(size=16)
    return tuple(float(x) for x in v / np.linalg.norm(v))


def _items(start: int, n: int) -> list[ItemPrelabeled]:
    return [ItemPrelabeled(producer="test", project=PROJECT, item_id=f"i{i}", model_version=1, encoder="hashing-16",
                           top_k=(LabelScore(label="a", probability=0.5 + (i % 50) / 100),
                                  LabelScore(label="b", probability=0.0)),
                           embedding=_vec(i)) for i in range(start, start + n)]


def _total(registry: CollectorRegistry, name: str) -> float:
    return sum(s.value for m in registry.collect() for s in m.samples if s.name == name)


async def _joined(env: Env, group: str, members: int = 2) -> bool:
    """The consumer group has settled with this many members."""
    admin = AIOKafkaAdminClient(bootstrap_servers=env.bootstrap)
    await admin.start()
    try:
        (described,) = (await admin.describe_consumer_groups([f"{env.namespace}.{group}"]))[0].groups
        return described[2] == "Stable" and len(described[5]) == members
    finally:
        await admin.close()


def _verified(start: int, n: int) -> list[LabelFinalized]:
    """Verified pre-labels at 0.96, all of them wrong.

    A project starts with auto-accept off (thresholds.NO_EVIDENCE) and a recommendation does not open it, so this
    evidence refutes the single band below it ([0.6 or 0.7, 1.0], target 0.5): the single border rises to the auto
    border. (Half wrong at 0.96 refuted the seed's auto border when a project started auto-accepting at 0.95.)
    """
    return [LabelFinalized(producer="test", project=PROJECT, item_id=f"i{i}", label="a", version=1,
                           provenance=Provenance.SINGLE_REVIEW, confidence=0.9, human_labels=1, expert_labels=0,
                           prelabel=LabelScore(label="b", probability=0.96), verified=True)
            for i in range(start, start + n)]


async def _settled(settings: RouterSettings) -> bool:
    lag = await consumer_lag(settings, "router")
    return {f"{settings.namespace}.router", f"{settings.namespace}.router.thresholds"} <= lag.keys() \
        and not any(lag.values())


async def test_two_replicas_route_each_item_once_and_share_one_owner_of_the_thresholds(env: Env) -> None:
    settings = env.settings(RouterSettings, relearn_every=5, min_evidence=5, single_start=None)
    replicas: list[ServiceRuntime] = [create_app(settings), create_app(settings)]
    for runtime in replicas:
        await runtime.start()
    try:
        for group in ("router", "router.thresholds"):
            await eventually(lambda g=group: _joined(env, g), timeout=60)
        await env.publish_events([ProjectConfigured(producer="test", project=PROJECT, labels=LABELS,
                                                    guideline_version=1)])
        await env.publish_events(_items(0, 60))
        await env.read("item.routed", lambda rs: len({r["item_id"] for r in rs}) >= 60)
        await eventually(lambda: _settled(settings), timeout=60)
        routed = await env.read_all("item.routed")
        assert sorted(r["item_id"] for r in routed) == sorted(f"i{i}" for i in range(60)), "each item routed once"
        shares = [_total(r.registry, "labelmesh_router_items_total") for r in replicas]
        assert sum(shares) == 60 and all(shares), f"both replicas route a share of the partitions: {shares}"

        # The model's recommendation, then verified pre-labels from every partition: all wrong at 0.96.
        await env.publish_events([ModelUpdated(
            producer="test", project=PROJECT, model_version=1, encoder="hashing-16", training_set_version="v1",
            training_set_size=10, artifact=ArtifactRef(uri="mem://m1", sha256="0" * 64, size=0, content_b64=""),
            recommended_thresholds=Thresholds(auto_accept=0.9, single_review=0.6))])
        db = replicas[0].db

        async def adopted() -> bool:
            return await db["thresholds"].find_one({"_id": PROJECT}) is not None

        await eventually(adopted, timeout=60)
        finals = _verified(0, 30)
        await env.publish_events(finals)

        async def learned() -> bool:
            state = await db["thresholds"].find_one({"_id": PROJECT})
            return bool(state and state["unlearned"] == 0 and await db["evidence"].count_documents({}) == 30)

        await eventually(learned, timeout=60)
        await eventually(lambda: _settled(settings), timeout=60)
        changes = [c async for c in db["threshold_changes"].find({"project": PROJECT}).sort("at")]
        assert len(changes) >= 2 and "recommendation" in changes[0]["reason"]
        assert changes[0]["new"] == {"auto_accept": 1.0, "single_review": 0.6}, "a recommendation opens no auto-accept"
        assert changes[-1]["new"]["single_review"] == 1.0, "all wrong at 0.96: the single band is refuted"
        # One owner applies them in order: each change starts where the previous one ended, none twice.
        for before, after in zip(changes, changes[1:], strict=False):
            assert after["old"] == before["new"], changes
        assert len({c["cause"] for c in changes}) == len(changes)
        owners = [_total(r.registry, "labelmesh_router_threshold_changes_total") for r in replicas]
        assert sorted(bool(n) for n in owners) == [False, True], f"exactly one replica changed them: {owners}"

        # Both replicas route with the thresholds in force now, and see every labelled item's neighbours: each
        # gets every final label (what the broadcast subscription will deliver), one of them before its item is
        # stored, which stays pending until the item's owner has stored both its embedding and its label.
        stored = await db["thresholds"].find_one({"_id": PROJECT})
        in_force = {"auto_accept": stored["auto_accept"], "single_review": stored["single_review"]}
        early = LabelFinalized(producer="test", project=PROJECT, item_id="i100", label="c", version=1,
                               provenance=Provenance.IMPORTED, confidence=1.0, human_labels=0, expert_labels=0,
                               verified=False)
        for runtime in replicas:
            await runtime.component.cache.learn_labels([*finals, early])
            assert runtime.component.cache.pending == {f"{PROJECT}/i100"}
        await env.publish_events([*_items(60, 60), early])
        await env.read("item.routed", lambda rs: len({r["item_id"] for r in rs}) >= 120)
        await eventually(lambda: _settled(settings), timeout=60)
        await env.publish_events(_items(120, 30))  # a batch on each replica after i100 is stored
        routed = await env.read("item.routed", lambda rs: len({r["item_id"] for r in rs}) >= 150)
        later = [r for r in routed if int(r["item_id"][1:]) >= 60]
        assert later and all(r["thresholds"] == in_force for r in later), (in_force, later[0]["thresholds"])
        now = [_total(r.registry, "labelmesh_router_items_total") for r in replicas]
        assert all(n > s for n, s in zip(now, shares, strict=True)), f"both replicas routed again: {shares} -> {now}"
        assert [len(r.component.cache.indexes[PROJECT]) for r in replicas] == [31, 31]
        assert [r.component.cache.pending for r in replicas] == [set(), set()]
        assert all(r["neighbours"] for r in later)
    finally:
        for runtime in replicas:
            await runtime.stop()


async def test_a_replica_that_takes_a_project_over_continues_its_stored_count(env: Env) -> None:
    settings = env.settings(RouterSettings, relearn_every=4, min_evidence=5, single_start=None)
    replicas: list[ServiceRuntime] = [create_app(settings), create_app(settings)]
    running = list(replicas)
    for runtime in replicas:
        await runtime.start()
    try:
        for group in ("router", "router.thresholds"):
            await eventually(lambda g=group: _joined(env, g), timeout=60)
        await env.publish_events([ProjectConfigured(producer="test", project=PROJECT, labels=LABELS,
                                                    guideline_version=1), *_items(0, 20)])
        await env.read("item.routed", lambda rs: len({r["item_id"] for r in rs}) >= 20)
        db = env.mongo()[settings.database_name("router")]  # outlives the replica that stops

        async def counted(unlearned: int, evidence: int) -> bool:
            state = await db["thresholds"].find_one({"_id": PROJECT})
            return bool(state and state["unlearned"] == unlearned
                        and await db["evidence"].count_documents({}) == evidence)

        await env.publish_events(_verified(0, 10))  # relearns at the 4th and 8th: 2 left over
        await eventually(lambda: counted(2, 10), timeout=60)
        await eventually(lambda: _settled(settings), timeout=60)
        (owner,) = [r for r in replicas if _total(r.registry, "labelmesh_router_threshold_changes_total")]

        # The owner leaves; the other replica takes the project's partition and continues from the stored count:
        # 2 + 10 relearns at the 2nd, 6th and 10th, none left over (a count kept in memory would leave 2).
        await owner.stop()
        running.remove(owner)
        for group in ("router", "router.thresholds"):
            await eventually(lambda g=group: _joined(env, g, 1), timeout=60)
        await env.publish_events(_verified(10, 10))
        await eventually(lambda: counted(0, 20), timeout=60)
        changes = [c async for c in db["threshold_changes"].find({"project": PROJECT}).sort("at")]
        for before, after in zip(changes, changes[1:], strict=False):
            assert after["old"] == before["new"], changes
    finally:
        for runtime in running:
            await runtime.stop()
