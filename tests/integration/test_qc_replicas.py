"""Two qc replicas in one namespace on the real broker and FerretDB: they split the partitions, and the state and
decisions they leave are those of one qc (one final label per item, one suspension, the same statistics)."""

from __future__ import annotations

from collections import Counter


import pytest

from labelmesh.replay import consumer_lag
from labelmesh.runtime.service import ServiceRuntime
from labelmesh.state_digest import database_digest
from schemas.events import (
    Envelope,
    ItemIngested,
    LabelFinalized,
    LabelSubmitted,
    QcEvidence,
    QcFlagged,
    Tier,
)
from schemas.keys import annotator_key
from services.qc.app import create_app
from services.qc.settings import QcSettings
from tests.conftest import eventually
from tests.qc_events import config as _config
from tests.qc_events import ingest as _ingest
from tests.qc_events import label as _label
from tests.qc_events import pre as _pre
from tests.qc_events import route as _route
from tests.kafka_helpers import Env, new_env

pytestmark = pytest.mark.integration
P = "rep"
GOLDEN = [f"g{i}" for i in range(12)]
LATE = GOLDEN[10:]  # their golden answers reach qc before the items do
WORK = [f"w{i}" for i in range(18)]  # single review; 'bad' labels the first six
MULTI = [f"m{i}" for i in range(10)]  # three annotators who agree
COMPARED = ("annotators", "project_stats", "evidence", "items", "labels", "reliability")


def _phases() -> list[list[Envelope]]:
    """Work labelled first; then golden answers, which suspend 'bad' at the tenth miss; then the late golden items."""
    labelled = [_label(P, w, "bad" if n < 6 else f"ann-{n % 3}", "b") for n, w in enumerate(WORK)]
    labelled += [_label(P, m, f"ann-{k}", "c") for m in MULTI for k in range(3)]
    return [
        [_config(P)] + [_ingest(P, g, golden_label="a") for g in GOLDEN if g not in LATE]
        + [_ingest(P, i) for i in WORK + MULTI] + [_route(P, w, Tier.SINGLE, 1) for w in WORK]
        + [_route(P, m, Tier.MULTI, 3) for m in MULTI] + [_pre(P, m, "c", seed=n) for n, m in enumerate(MULTI)],
        labelled,
        [_label(P, g, "good", "a", golden=True) for g in GOLDEN[:10]]
        + [_label(P, g, "bad", "c", golden=True) for g in GOLDEN],
        [_ingest(P, g, golden_label="a") for g in LATE],
    ]


def _assigned(runtime: ServiceRuntime) -> set[tuple[str, int]]:
    return {(tp.topic.split(".", 1)[1], tp.partition)  # without the test's topic prefix
            for sub in runtime.bus.broker.subscribers if sub.consumer is not None
            for tp in sub.consumer.assignment()}


async def _run(env: Env, replicas: int, phases: list[list[Envelope]]) -> tuple[list[ServiceRuntime], dict[str, str]]:
    """The stream through `replicas` qc processes sharing one namespace, each phase settled before the next."""
    settings = env.settings(QcSettings, confirm_single=False, agreement_every=10, agreement_min_items=5,
                            drift_every=5)
    runtimes = [create_app(settings) for _ in range(replicas)]
    for runtime in runtimes:
        await runtime.start()

    async def split() -> bool:  # every replica owns partitions of both groups before anything is published
        owned = [_assigned(r) for r in runtimes]
        return all(any(t == "item.ingested" for t, _ in o) and any(t == QcEvidence.TOPIC for t, _ in o)
                   for o in owned)

    async def settled() -> bool:
        lag = await consumer_lag(settings, "qc", {settings.consumer_group("qc"): ["label.submitted"],
                                                  settings.consumer_group("qc.tally"): [QcEvidence.TOPIC]})
        return all(v == 0 for v in lag.values()) and not await runtimes[0].db["inflight_events"].count_documents({})

    await eventually(split, timeout=60)
    for phase in phases:
        await env.publish_events(phase)
        await eventually(settled, timeout=120, interval=0.5)
    return runtimes, await database_digest(runtimes[0].db, skip=("processed_events", "inflight_events",
                                                                  "projects", "agreement"))


async def test_two_replicas_decide_once_and_count_like_one(env: Env) -> None:
    phases = _phases()  # the same events (and event ids) for both runs
    pair, digest = await _run(env, 2, phases)
    try:
        db = pair[0].db
        for topic in ("label.submitted", QcEvidence.TOPIC):
            consumed = [r.registry.get_sample_value("labelmesh_events_consumed_total",
                                                    {"service": "qc", "topic": topic}) or 0 for r in pair]
            assert all(n > 0 for n in consumed), f"both replicas handled {topic}: {consumed}"

        finals = [LabelFinalized.model_validate(r) for r in await env.read_all(LabelFinalized.TOPIC)]
        per_item = Counter(f.item_id for f in finals)
        assert set(per_item) == {*GOLDEN, *WORK, *MULTI}
        assert all(n == 1 for n in per_item.values()), f"one final label per item: {per_item.most_common(3)}"
        assert {f.label for f in finals if f.item_id in MULTI} == {"c"}

        flags = [QcFlagged.model_validate(r) for r in await env.read_all(QcFlagged.TOPIC)]
        # What one flag is about: its subject, and for project passes the window or test it concerns.
        per_subject = Counter((f.kind, f.subject_id, f.evidence.get("window"), f.evidence.get("test")) for f in flags)
        assert all(n == 1 for n in per_subject.values()), f"no flag twice: {per_subject.most_common(3)}"
        suspended = [f for f in flags if f.kind == "annotator_suspended"]
        assert [(f.subject_id, f.evidence["golden_n"]) for f in suspended] == [("bad", 10)]
        assert sorted(f.item_id for f in flags if f.kind == "suspended_annotator_label") == sorted(WORK[:6])
        assert await db["items"].count_documents({"item_id": {"$in": WORK[:6]}, "escalated": True}) == 6

        bad = await db["annotators"].find_one({"_id": annotator_key(P, "bad")})
        good = await db["annotators"].find_one({"_id": annotator_key(P, "good")})
        assert (bad["golden_n"], bad["golden_correct"], bad["labels"]) == (12, 0, 6 + 12), \
            "the answers to the late golden items were kept until the items came"
        assert bad["suspended"] and not good.get("suspended") and (good["golden_n"], good["golden_correct"]) == (10, 10)
        stats = await db["project_stats"].find_one({"_id": P})
        # finals counts what the label-error pass can read: final items with an embedding (the multi ones)
        assert stats["labels"] == len(WORK) + 3 * len(MULTI) + 10 + 12 and stats["finals"] == len(MULTI)
    finally:
        for runtime in pair:
            await runtime.stop()

    alone, reference = await _run(await new_env(), 1, phases)
    await alone[0].stop()
    differing = [name for name in COMPARED if digest.get(name) != reference.get(name)]
    assert not differing, f"two replicas left other state than one in {differing}"
    assert set(COMPARED) <= reference.keys()


async def test_a_replica_indexes_the_final_labels_another_replica_decided(env: Env) -> None:
    """The kNN check's index is memory: each replica fills it from every final label (a broadcast subscription
    once the bus has them), reading the embedding from the owner's document."""
    settings = env.settings(QcSettings)
    owner = create_app(settings)
    await owner.start()
    try:
        items = [f"n{i}" for i in range(6)]
        await env.publish_events([_config(P)] + [_ingest(P, i, trusted_label="a") for i in items]
                                 + [_pre(P, i, "a", seed=n) for n, i in enumerate(items)])
        finals = await env.read(LabelFinalized.TOPIC, lambda rs: len(rs) >= len(items))

        async def embedded() -> bool:
            return await owner.db["items"].count_documents({"embedding": {"$exists": True}}) == len(items)

        await eventually(embedded)
    finally:
        await owner.stop()
    other = create_app(settings)  # not started: its handler is driven directly, as the bus would
    try:
        assert not other.component.indexes.get(P)
        await other.component.items.on_finalized([LabelFinalized.model_validate(r) for r in finals])
        _, labels, ids = other.component.indexes[P].rows()
        assert sorted(ids) == items and set(labels) == {"a"}
    finally:
        await other.mongo.close()
