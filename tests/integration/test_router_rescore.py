"""The router re-scores with the champion (services/router/champion.py), against the real broker and FerretDB.

Items queued for review on a weak first model's pre-labels are promoted to auto when a newer model, re-scoring
their stored embeddings, puts them above the open auto border; an item embedded by another encoder keeps its
first pre-label; and a verified item is threshold evidence at the champion's confidence.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest

from labelmesh.ml.head import sha256_hex, train_head
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
ENCODER = "stub-16"
LABELS = ("a", "b")


def _near(axis: int, seed: int) -> np.ndarray:
    v = np.zeros(16)
    v[axis] = 1.0
    v += np.random.default_rng(seed).normal(scale=0.05, size=16)
    return v / np.linalg.norm(v)


def _model(version: int) -> ModelUpdated:
    """A head that tells the two clusters apart with near certainty."""
    X = np.stack([_near(0, s) for s in range(20)] + [_near(1, 100 + s) for s in range(20)])
    head = train_head(X, ["a"] * 20 + ["b"] * 20, encoder_name=ENCODER, classes=LABELS, cv_folds=4)
    content = head.to_bytes()
    return ModelUpdated(
        producer="test", project="rs", model_version=version, encoder=ENCODER,
        artifact=ArtifactRef(uri="test://", sha256=sha256_hex(content), size=len(content),
                             content_b64=base64.b64encode(content).decode()),
        training_set_version="t", training_set_size=40, recommended_thresholds=Thresholds(),
    )


def _pre(item_id: str, vector: np.ndarray, top: list[tuple[str, float]], encoder: str = ENCODER) -> ItemPrelabeled:
    return ItemPrelabeled(producer="test", project="rs", item_id=item_id, model_version=1, encoder=encoder,
                          top_k=tuple(LabelScore(label=l, probability=p) for l, p in top),
                          embedding=tuple(float(x) for x in vector))


def _verified(first: int, n: int) -> list[LabelFinalized]:
    """Clean verified pre-labels at 0.99 (items the router never saw): they open the auto border at 0.98."""
    return [LabelFinalized(producer="test", project="rs", item_id=f"v{i}", label="a", version=1,
                           provenance=Provenance.SINGLE_REVIEW, confidence=0.9, human_labels=1, expert_labels=0,
                           prelabel=LabelScore(label="a", probability=0.99), model_version=1, verified=True)
            for i in range(first, first + n)]


async def test_a_new_champion_promotes_queued_items_and_scores_the_evidence(env: Env) -> None:
    runtime = create_app(env.settings(RouterSettings, relearn_every=5, min_evidence=5, spot_check_rate=0.05))
    await runtime.start()
    try:
        await env.publish_events([ProjectConfigured(producer="test", project="rs", labels=LABELS, guideline_version=1,
                                                    target_auto_error=0.3)])
        # The first model was unsure of all three (0.62 < the 0.98 border the evidence is about to open).
        await env.publish_events([
            _pre("clear-a", _near(0, 1000), [("a", 0.62), ("b", 0.38)]),
            _pre("clear-b", _near(1, 1001), [("a", 0.62), ("b", 0.38)]),
            _pre("foreign", _near(0, 1002), [("a", 0.62), ("b", 0.38)], encoder="another-16"),
        ])
        first = await env.read("item.routed", lambda rs: len(rs) >= 3)
        assert {r["tier"] for r in first} <= {"single", "multi"}, first

        async def border() -> bool:
            doc = await runtime.db["thresholds"].find_one({"_id": "rs"})
            return doc is not None and doc.get("auto_accept", 1.0) < 1.0

        await env.publish_events(_verified(0, 20))
        await eventually(border)
        # The border opened; on the first model's 0.62 nothing queued is promoted.
        assert await runtime.db["reroutes"].count_documents({"project": "rs", "promoted": True}) == 0

        await env.publish_events([_model(2)])
        routed = await env.read("item.routed", lambda rs: sum(bool(r["promoted"]) for r in rs) >= 2)
        promoted = {r["item_id"]: r for r in routed if r["promoted"]}
        assert set(promoted) == {"clear-a", "clear-b"}, "the foreign encoder's item keeps its first pre-label"
        for item_id, label in (("clear-a", "a"), ("clear-b", "b")):
            event = promoted[item_id]
            assert (event["tier"], event["required_annotators"], event["model_version"]) == ("auto", 0, 2)
            assert event["top_k"][0]["label"] == label and event["top_k"][0]["probability"] > 0.98, event["top_k"]
            assert "model v2 arrived" in event["reasons"][-1] and "re-scored by model v2" in event["reasons"][-1]
        assert await runtime.db["models"].count_documents({"project": "rs"}) == 1
        assert (await runtime.db["champions"].find_one({"_id": "rs"}))["version"] == 2

        # An item the first model pre-labelled "b" at 0.55, verified as "a": its evidence is the champion's verdict
        # (right, near-certain), not the first model's (wrong, 0.55).
        await env.publish_events([_pre("late", _near(0, 1003), [("b", 0.55), ("a", 0.45)])])
        await env.read("item.routed", lambda rs: any(r["item_id"] == "late" for r in rs))
        await env.publish_events([LabelFinalized(
            producer="test", project="rs", item_id="late", label="a", version=1, provenance=Provenance.SINGLE_REVIEW,
            confidence=0.9, human_labels=1, expert_labels=0, prelabel=LabelScore(label="b", probability=0.55),
            model_version=1, verified=True)])

        async def evidence() -> dict[str, object] | None:
            return await runtime.db["evidence"].find_one({"_id": "rs/late"})

        # Evidence rows are stored in relearn batches: four more clean ones complete the batch of five.
        await env.publish_events(_verified(20, 4))
        row = await eventually(evidence)
        assert row["correct"] is True and row["confidence"] > 0.98 and row["model_version"] == 2, row
    finally:
        await runtime.stop()
