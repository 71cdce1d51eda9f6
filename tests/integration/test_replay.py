"""`labelmesh replay` against the real broker and FerretDB: a rebuilt service holds the same state as before."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pytest

from labelmesh.replay import REPUBLISHED, consumer_lag
from labelmesh.runtime.service import ServiceRuntime
from labelmesh.runtime.settings import CommonSettings
from labelmesh.state_digest import canonical, database_digest, read_collections
from schemas.events import (
    Envelope,
    ItemIngested,
    ItemPrelabeled,
    ItemRouted,
    LabelFinalized,
    LabelScore,
    LabelSubmitted,
    ProjectConfigured,
    Provenance,
    TextPayload,
    Thresholds,
    Tier,
)
from services.qc.app import create_app as create_qc
from services.qc.settings import QcSettings
from services.router.app import create_app as create_router
from services.router.settings import RouterSettings
from tests.conftest import eventually
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration
LABELS = ("a", "b", "c")
ORDINARY_LABELS = 1 + 6 + 4 * 3  # the qc stream's labels by annotators: auto0's spot check, single and multi votes


async def _cli(env: Env, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "labelmesh.cli", "replay", *args, env={**os.environ, **env.environ()},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


async def _settled(settings: CommonSettings, service: str, groups: dict[str, list[str]]) -> dict[str, int] | None:
    """Every expected consumer group exists and has consumed everything on its topics (lag 0)."""
    lag = await consumer_lag(settings, service, groups)
    return lag if groups.keys() <= lag.keys() and not any(lag.values()) else None


async def _run_until_settled(make: Callable[[], ServiceRuntime], settings: CommonSettings, service: str,
                             groups: dict[str, list[str]]) -> tuple[ServiceRuntime, dict[str, str]]:
    runtime = make()
    await runtime.start()
    await eventually(lambda: _settled(settings, service, groups), timeout=120, interval=0.5)
    return runtime, await database_digest(runtime.db)


async def _replay_and_compare(env: Env, service: str, make: Callable[[], ServiceRuntime], settings: CommonSettings,
                              stream: list[Envelope], groups: dict[str, list[str]]) -> dict[str, str]:
    await env.publish_events(stream)
    runtime, before = await _run_until_settled(make, settings, service, groups)
    original = {name: [canonical(d) for d in docs] for name, docs in (await read_collections(runtime.db)).items()}
    try:
        assert before, "the service stored something"
        code, out = await _cli(env, service, "--yes")
        assert code == 1 and "is running" in out, f"a running service must be refused: {out}"
        assert await database_digest(runtime.db) == before, "a refused replay changed nothing"
    finally:
        await runtime.stop()

    code, out = await _cli(env, service, "--yes")
    assert code == 0, out
    assert "processed_events" in out, "the inbox goes too, or replayed events would be skipped"
    check = make()
    try:
        assert await check.db.list_collection_names() == [], "every projection was dropped"
        lag = await consumer_lag(settings, service)
        assert lag[f"{env.namespace}.{service}"] > 0, "the consumer group was rewound"
        for group, topics in groups.items():
            if set(topics) <= set(REPUBLISHED.get(service, ())):
                assert lag[group] == 0, f"{group} starts at the end: the rebuild publishes {topics} again"
    finally:
        await check.mongo.close()

    runtime, after = await _run_until_settled(make, settings, service, groups)
    try:
        if after != before:
            rebuilt = await read_collections(runtime.db)
            changed = {name: [canonical(d) for d in rebuilt[name] if canonical(d) not in original[name]]
                       for name in rebuilt if after.get(name) != before.get(name)}
            pytest.fail(f"rebuilt state differs from the original: {changed}")
    finally:
        await runtime.stop()
    return after


def _vec(seed: int) -> tuple[float, ...]:
    v = np.random.default_rng(seed).normal(size=16)
    return tuple(float(round(x, 6)) for x in v / np.linalg.norm(v))


async def test_router_rebuilt_from_its_topics_equals_the_original(env: Env) -> None:
    rng = np.random.default_rng(3)
    stream: list[Envelope] = [ProjectConfigured(producer="test", project="rp", labels=LABELS, guideline_version=1)]
    for i in range(60):
        p = float(rng.uniform(0.3, 1.0))
        top = (LabelScore(label=LABELS[i % 3], probability=p),
               LabelScore(label=LABELS[(i + 1) % 3], probability=round((1 - p) * 0.9, 6)))
        stream.append(ItemPrelabeled(producer="test", project="rp", item_id=f"i{i}", model_version=1,
                                     encoder="hashing-16", top_k=top, embedding=_vec(i),
                                     trusted=i % 17 == 0, golden=i % 23 == 5))
    # Verified labels of another project: their evidence travels through the router's own threshold.evidence
    # topic to the project's owner, and is rebuilt from it (another project, so no label changes rp's routing).
    stream += [LabelFinalized(producer="test", project="rq", item_id=f"v{i}", label="a", version=1,
                              provenance=Provenance.SINGLE_REVIEW, confidence=0.9, human_labels=1, expert_labels=0,
                              prelabel=LabelScore(label=LABELS[i % 2], probability=0.9), verified=True)
               for i in range(10)]
    settings = env.settings(RouterSettings, spot_check_rate=0.1)
    groups = {f"{env.namespace}.router": ["item.prelabeled", "label.finalized", "qc.flagged"],
              f"{env.namespace}.router.thresholds": ["threshold.evidence", "model.updated"],
              f"{env.namespace}.router.projects": ["project.configured"]}
    after = await _replay_and_compare(env, "router", lambda: create_router(settings), settings, stream, groups)
    assert {"decisions", "items", "projects", "processed_events", "evidence", "thresholds"} <= after.keys()
    db = env.mongo()[settings.database_name("router")]
    assert await db["decisions"].count_documents({}) == 60 - 4, "every item but the trusted ones was routed again"
    assert await db["evidence"].count_documents({"project": "rq"}) == 10
    assert (await db["thresholds"].find_one({"_id": "rq"}))["unlearned"] == 10


async def test_qc_rebuilt_from_its_topics_equals_the_original(env: Env) -> None:
    project = "qp"
    stream: list[Envelope] = [ProjectConfigured(producer="test", project=project, labels=LABELS, guideline_version=1)]

    def item(i: str, **kw: object) -> None:
        stream.append(ItemIngested(producer="test", project=project, item_id=i, payload=TextPayload(text=i), **kw))

    def routed(i: str, tier: Tier, required: int, top: str = "a", p: float = 0.9, **kw: object) -> None:
        stream.append(ItemRouted(producer="test", project=project, item_id=i, tier=tier, required_annotators=required,
                                 top_k=(LabelScore(label=top, probability=p),), thresholds=Thresholds(), **kw))

    def vote(i: str, annotator: str, label: str, role: str = "annotator") -> None:
        stream.append(LabelSubmitted(producer="test", project=project, item_id=i, task_id=f"t-{i}",
                                     annotator_id=annotator, role=role, label=label, time_spent_ms=1000,
                                     guideline_version=1, idempotency_key=f"{i}-{annotator}"))

    for n in range(4):
        item(f"trusted{n}", trusted_label=LABELS[n % 3])
    for n in range(6):
        item(f"auto{n}")
        routed(f"auto{n}", Tier.AUTO, 0, top=LABELS[n % 3], p=0.99, spot_check=n == 0)
    vote("auto0", "ann1", "b")
    for n in range(6):
        item(f"single{n}")
        routed(f"single{n}", Tier.SINGLE, 1, p=0.8)
        vote(f"single{n}", f"ann{n % 3}", LABELS[n % 3])
    for n in range(4):
        item(f"multi{n}")
        routed(f"multi{n}", Tier.MULTI, 3, p=0.5)
        for k in range(3):  # multi0 and multi2 agree; multi1 and multi3 split three ways (an expert is needed)
            vote(f"multi{n}", f"ann{k}", "a" if n % 2 == 0 else LABELS[k])
    vote("multi1", "exp1", "c", role="expert")
    item("exp0")
    routed("exp0", Tier.EXPERT, 1, p=0.4)
    vote("exp0", "exp1", "b", role="expert")
    # No expert answers for overrides in the stream; one agreement pass, at the project's last ordinary label, which
    # reads every label the item owner stored before it told the statistics owner (a rebuild must keep that order).
    settings = env.settings(QcSettings, confirm_single=False, agreement_every=ORDINARY_LABELS)
    groups = {f"{env.namespace}.qc": ["item.ingested", "item.routed", "label.submitted"],
              f"{env.namespace}.qc.tally": ["qc.evidence"],
              f"{env.namespace}.qc.projects": ["project.configured"]}
    after = await _replay_and_compare(env, "qc", lambda: create_qc(settings), settings, stream, groups)
    assert {"items", "projects", "processed_events"} <= after.keys()
    items = env.mongo()[settings.database_name("qc")]["items"]
    finals = {d["item_id"]: d["final"]["provenance"] async for d in items.find({"final": {"$exists": True}})}
    assert len(finals) == 4 + 6 + 6 + 3 + 1, finals
    assert finals["multi1"] == "expert" and finals["multi0"] == "consensus" and finals["trusted0"] == "imported"
    assert "multi3" not in finals and (await items.find_one({"_id": f"{project}/multi3"}))["escalated"]
    overall = await env.mongo()[settings.database_name("qc")]["agreement"].find_one({"_id": f"{project}/all"})
    assert overall is not None and overall["labels"] == ORDINARY_LABELS, overall


async def test_router_replay_since_a_time_reapplies_only_the_later_events(env: Env) -> None:
    def batch(start: int, n: int) -> list[Envelope]:
        return [ItemPrelabeled(producer="test", project="rs", item_id=f"s{i}", model_version=1, encoder="hashing-16",
                               top_k=(LabelScore(label=LABELS[i % 3], probability=0.5 + (i % 5) / 10),),
                               embedding=_vec(100 + i)) for i in range(start, start + n)]

    settings = env.settings(RouterSettings)
    groups = {f"{env.namespace}.router": ["item.prelabeled"], f"{env.namespace}.router.projects": ["project.configured"]}
    await env.publish_events([ProjectConfigured(producer="test", project="rs", labels=LABELS, guideline_version=1),
                              *batch(0, 20)])
    runtime, _ = await _run_until_settled(lambda: create_router(settings), settings, "router", groups)
    await asyncio.sleep(0.05)
    since = datetime.now(UTC)
    await asyncio.sleep(0.05)
    try:
        await env.publish_events(batch(20, 10))
        await eventually(lambda: _settled(settings, "router", groups), timeout=120, interval=0.5)
        before = await database_digest(runtime.db)
    finally:
        await runtime.stop()

    code, out = await _cli(env, "router", "--since", since.isoformat())
    assert code == 0 and "removed 10 inbox entries" in out, out
    lag = await consumer_lag(settings, "router", groups)
    assert lag[f"{env.namespace}.router"] == 10, "rewound to the first event after the time, not to the start"
    runtime, after = await _run_until_settled(lambda: create_router(settings), settings, "router", groups)
    try:
        assert after == before
        assert await runtime.db["processed_events"].count_documents({}) == 31
    finally:
        await runtime.stop()
