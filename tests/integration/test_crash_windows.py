"""A service that dies after storing a decision and before publishing it announces the decision when it is back.

The broker going away at that moment is the same window as a SIGKILL (tests/e2e/test_crash_recovery.py hits
it by chance); here the publish fails on purpose, so the window is hit every time.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from pymongo.errors import ConnectionFailure

from labelmesh.datasets import load
from labelmesh.ml.encoder import load_encoder
from schemas.events import Envelope, ItemPrelabeled, LabelFinalized, ModelUpdated, ProjectConfigured, Provenance, Tier
from services.qc.app import create_app as create_qc
from services.qc.settings import QcSettings
from services.trainer.app import create_app as create_trainer
from services.trainer.settings import TrainerSettings
from tests.conftest import eventually
from tests.qc_events import config as _config
from tests.qc_events import ingest as _ingest
from tests.qc_events import label as _label
from tests.qc_events import pre as _pre
from tests.qc_events import route as _route
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration


def _dies_before_publishing(runtime: Any, kind: type[Envelope]) -> list[int]:
    """The runtime's next publish holding a `kind` event fails as if the process died there; returns a counter."""
    publish, failures = runtime.bus.publish, [0]

    async def publish_or_die(events: list[Envelope]) -> None:
        if not failures[0] and any(isinstance(e, kind) for e in events):
            failures[0] += 1
            raise ConnectionFailure("simulated: gone between storing the decision and publishing it")
        await publish(events)

    runtime.bus.publish = publish_or_die
    return failures


async def test_qc_publishes_a_final_label_it_stored_before_dying(env: Env) -> None:
    runtime = create_qc(env.settings(QcSettings, confirm_single=False))
    failures = _dies_before_publishing(runtime, LabelFinalized)
    await runtime.start()
    p = "cw"
    try:
        await env.publish_events([_config(p), _ingest(p, "i-1"), _pre(p, "i-1", "b", seed=1),
                                  _route(p, "i-1", Tier.SINGLE, 1)])
        await env.publish_events([_label(p, "i-1", "ann-1", "b")])
        finals = await env.read("label.finalized", lambda rs: any(r["item_id"] == "i-1" for r in rs), timeout=60)
        assert failures == [1], "the first publish of the final label failed"
        stored = await runtime.db["items"].find_one({"_id": f"{p}/i-1"})
        assert stored["final"]["label"] == "b" and stored["final"]["version"] == 1
        assert {(r["item_id"], r["version"], r["label"]) for r in finals} == {("i-1", 1, "b")}

        async def nothing_in_flight() -> bool:
            return await runtime.db["inflight_events"].count_documents({}) == 0

        await eventually(nothing_in_flight)
    finally:
        await runtime.stop()


async def test_trainer_announces_a_promoted_model_after_a_restart(env: Env) -> None:
    labels = ("card_arrival", "exchange_rate", "pin_blocked")
    rows = [r for r in load("train") if r.label in labels]
    random.Random(2).shuffle(rows)
    rows = rows[:110]
    encoder = load_encoder("hashing")
    vectors = encoder.encode([r.text for r in rows])
    settings = env.settings(TrainerSettings, first_model_min=100, retrain_every=1000, min_eval_items=5,
                            retry_delay_s=600)  # no retry before the restart: this is the killed-process case
    first = create_trainer(settings)
    failures = _dies_before_publishing(first, ModelUpdated)
    await first.start()
    try:
        events: list[Envelope] = [ProjectConfigured(producer="test", project="cw", labels=labels, guideline_version=1)]
        for row, vec in zip(rows, vectors, strict=True):
            events.append(ItemPrelabeled(producer="test", project="cw", item_id=row.item_id, encoder=encoder.name,
                                         embedding=tuple(float(x) for x in vec)))
            events.append(LabelFinalized(producer="test", project="cw", item_id=row.item_id, label=row.label,
                                         version=1, provenance=Provenance.IMPORTED, confidence=1.0, human_labels=0,
                                         expert_labels=0, verified=False))
        await env.publish_events(events)

        async def promoted_not_announced() -> bool:
            doc = await first.db["models"].find_one({"_id": "cw/1"})
            return bool(doc and doc["promoted"] and doc["published"] is False and failures == [1])

        await eventually(promoted_not_announced, timeout=90)
    finally:
        await first.stop()
    assert not await env.read_all("model.updated"), "nothing was announced before the restart"

    second = create_trainer(settings)
    await second.start()
    try:
        models = await env.read("model.updated", lambda rs: len(rs) >= 1, timeout=60)
        assert [(m["project"], m["model_version"]) for m in models] == [("cw", 1)]
        assert (await second.db["models"].find_one({"_id": "cw/1"}))["published"] is True
    finally:
        await second.stop()
