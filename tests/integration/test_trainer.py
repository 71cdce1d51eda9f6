"""The trainer against the real broker and FerretDB: first model, artifact integrity, lineage, retraining."""

from __future__ import annotations

import base64
import hashlib
import random

import pytest

from labelmesh.datasets import load
from labelmesh.ml.encoder import load_encoder
from labelmesh.ml.head import TrainedHead
from schemas.events import ItemPrelabeled, LabelFinalized, ProjectConfigured, Provenance
from services.trainer.app import create_app
from services.trainer.settings import TrainerSettings
from tests.conftest import eventually
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration
LABELS = ("card_arrival", "exchange_rate", "pin_blocked", "top_up_failed")


async def test_trains_publishes_and_keeps_lineage(env: Env) -> None:
    rows = [r for r in load("train") if r.label in LABELS]
    random.Random(1).shuffle(rows)
    rows = rows[:160]
    encoder = load_encoder("hashing")
    vectors = encoder.encode([r.text for r in rows])
    runtime = create_app(env.settings(TrainerSettings, first_model_min=100, retrain_every=40, min_eval_items=5))
    await runtime.start()
    try:
        await env.publish_events([ProjectConfigured(producer="test", project="tr", labels=LABELS, guideline_version=1)])
        events = []
        for row, vec in zip(rows[:130], vectors[:130], strict=True):
            events.append(ItemPrelabeled(producer="test", project="tr", item_id=row.item_id, encoder=encoder.name,
                                         embedding=tuple(float(x) for x in vec)))
            events.append(LabelFinalized(producer="test", project="tr", item_id=row.item_id, label=row.label,
                                         version=1, provenance=Provenance.IMPORTED, confidence=1.0, human_labels=0,
                                         expert_labels=0, verified=False, guideline_version=1))
        await env.publish_events(events)
        models = await env.read("model.updated", lambda rs: len(rs) >= 1, timeout=90)
        first = models[0]
        content = base64.b64decode(first["artifact"]["content_b64"])
        assert hashlib.sha256(content).hexdigest() == first["artifact"]["sha256"]
        head = TrainedHead.from_bytes(content)
        assert set(head.classes) == set(LABELS)
        assert first["model_version"] == 1 and first["encoder"] == encoder.name
        assert first["heldout_metrics"]["heldout_n"] > 0
        assert 0.0 <= first["recommended_thresholds"]["single_review"] <= first["recommended_thresholds"]["auto_accept"]

        registry = await runtime.db["models"].find_one({"_id": "tr/1"})
        assert registry["promoted"] and registry["sha256"] == first["artifact"]["sha256"]
        stored = await runtime.db["artifacts.files"].find_one({"_id": registry["artifact_id"]})
        assert stored["length"] == len(content)
        training_set = await runtime.db["training_sets"].find_one({"_id": first["training_set_version"]})
        assert training_set["size"] == first["training_set_size"] >= 100
        relabelled = next(m for m in training_set["members"])

        # Relabel one trained item and add 30 more: the new label version is kept beside the old one,
        # and we can answer which models were trained on the label before its correction.
        item_id = relabelled.split("@")[0]
        more = [LabelFinalized(producer="test", project="tr", item_id=item_id, label=LABELS[0], version=2,
                               provenance=Provenance.CORRECTED, confidence=1.0, human_labels=1, expert_labels=1,
                               verified=True, guideline_version=2)]
        for row, vec in zip(rows[130:], vectors[130:], strict=True):
            more.append(ItemPrelabeled(producer="test", project="tr", item_id=row.item_id, encoder=encoder.name,
                                       embedding=tuple(float(x) for x in vec)))
            more.append(LabelFinalized(producer="test", project="tr", item_id=row.item_id, label=row.label,
                                       version=1, provenance=Provenance.SINGLE_REVIEW, confidence=0.9,
                                       human_labels=1, expert_labels=0, verified=True, guideline_version=1))
        await env.publish_events(more)

        async def both_versions() -> bool:
            return await runtime.db["label_versions"].count_documents({"item_id": item_id}) == 2

        await eventually(both_versions)
        example = await runtime.db["examples"].find_one({"_id": f"tr/{item_id}"})
        assert example["version"] == 2 and example["label"] == LABELS[0]
        sets = [d["_id"] async for d in runtime.db["training_sets"].find({"members": f"{item_id}@1"})]
        trained_on_old = [d["version"] async for d in runtime.db["models"].find({"training_set_version": {"$in": sets}})]
        assert trained_on_old == [1]
    finally:
        await runtime.stop()
