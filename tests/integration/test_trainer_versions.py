"""Model versions on the real FerretDB: two trainers registering at once never take the same number."""

from __future__ import annotations

import asyncio
import random

import pytest

from labelmesh.datasets import load
from labelmesh.ml.encoder import load_encoder
from schemas.events import Envelope, ItemPrelabeled, LabelFinalized, ModelUpdated, ProjectConfigured, Provenance
from services.trainer.app import create_app
from services.trainer.registry import model_key, next_version, register
from services.trainer.settings import TrainerSettings
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration


async def test_two_concurrent_registrations_cannot_both_take_version_n(env: Env) -> None:
    mongo = env.mongo()
    models = mongo[f"{env.namespace}_trainer"]["models"]
    try:
        assert await next_version(models, "pv") == 1
        # Both trainers computed 1 as the next version (neither saw the other's model yet).
        taken = await asyncio.gather(*(register(models, "pv", lambda v, who=who: {"by": who}, version=1)
                                       for who in ("a", "b")))
        assert sorted(taken) == [1, 2]
        docs = {d["_id"]: d async for d in models.find({"project": "pv"})}
        assert set(docs) == {model_key("pv", 1), model_key("pv", 2)}
        assert {docs[model_key("pv", v)]["by"] for v in taken} == {"a", "b"}, "each kept its own model"
        assert all(docs[model_key("pv", v)]["version"] == v for v in taken)
        # A third, with a stale guess, moves past both; the next guess is the highest plus one.
        assert await register(models, "pv", lambda v: {"by": "c"}, version=1) == 3
        assert await next_version(models, "pv") == 4
        assert await next_version(models, "other") == 1, "versions count per project"
    finally:
        await mongo.close()


async def test_two_trainers_promoting_at_once_announce_two_versions(env: Env) -> None:
    """A mis-rollout: two trainer processes train the same project at the same moment and both promote."""
    labels = ("card_arrival", "exchange_rate", "pin_blocked")
    rows = [r for r in load("train") if r.label in labels]
    random.Random(4).shuffle(rows)
    rows = rows[:90]
    encoder = load_encoder("hashing")
    events: list[Envelope] = []
    for row, vec in zip(rows, encoder.encode([r.text for r in rows]), strict=True):
        events.append(ItemPrelabeled(producer="test", project="tv", item_id=row.item_id, encoder=encoder.name,
                                     embedding=tuple(float(x) for x in vec)))
        events.append(LabelFinalized(producer="test", project="tv", item_id=row.item_id, label=row.label, version=1,
                                     provenance=Provenance.IMPORTED, confidence=1.0, human_labels=0, expert_labels=0,
                                     verified=False))
    settings = env.settings(TrainerSettings, min_eval_items=5)
    trainers = [create_app(settings), create_app(settings)]  # not started: train() is called as the loop would
    try:
        for runtime in trainers:
            await runtime.bus.broker.connect()
        first = trainers[0].component
        await first.catalog.store([ProjectConfigured(producer="test", project="tv", labels=labels,
                                                     guideline_version=1)])
        await first.on_events(events)
        promoted = await asyncio.gather(*(t.component.train("tv", {"trained_on": 0, "champion": None})
                                          for t in trainers))
        assert sorted(m.model_version for m in promoted if m is not None) == [1, 2]
        announced = await env.read(ModelUpdated.TOPIC, lambda rs: len(rs) >= 2)
        assert sorted(m["model_version"] for m in announced) == [1, 2]
        assert len({m["event_id"] for m in announced}) == 2
        state = await trainers[0].db["train_state"].find_one({"_id": "tv"})
        assert state["champion"] == 2, "the champion is the newer version, whichever trainer finished last"
    finally:
        for runtime in trainers:
            await runtime.bus.broker.stop()
            await runtime.mongo.close()
