"""The router against the real broker and FerretDB: tiers, neighbours, learned thresholds and qc reactions."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.events import (
    FlagKind,
    FlagSubject,
    ItemPrelabeled,
    LabelFinalized,
    LabelScore,
    ProjectConfigured,
    Provenance,
    QcFlagged,
)
from services.router.app import create_app
from services.router.settings import RouterSettings
from tests.conftest import eventually
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration
LABELS = ("a", "b", "c")


def _vec(seed: int) -> tuple[float, ...]:
    v = np.random.default_rng(seed).normal(size=16)
    return tuple(float(x) for x in v / np.linalg.norm(v))


def _pre(item_id: str, top: list[tuple[str, float]], *, seed: int = 0, **kw: object) -> ItemPrelabeled:
    return ItemPrelabeled(producer="test", project="rt", item_id=item_id, model_version=1, encoder="hashing-16",
                          top_k=tuple(LabelScore(label=l, probability=p) for l, p in top), embedding=_vec(seed), **kw)


async def test_routes_by_confidence_and_reacts_to_feedback(env: Env) -> None:
    runtime = create_app(env.settings(RouterSettings, relearn_every=5, min_evidence=5, spot_check_rate=0.05))
    await runtime.start()
    try:
        await env.publish_events([ProjectConfigured(producer="test", project="rt", labels=LABELS, guideline_version=1)])
        await env.publish_events([
            _pre("sure", [("a", 0.99), ("b", 0.01)], seed=1),
            _pre("likely", [("a", 0.80), ("b", 0.15)], seed=2),
            _pre("unsure", [("a", 0.40), ("b", 0.30)], seed=3),
            _pre("coin", [("a", 0.45), ("b", 0.44)], seed=4),
            _pre("boot", [], seed=5, trusted=True),
            _pre("gold", [("a", 0.9)], seed=6, golden=True),
        ])
        routed = await env.read("item.routed", lambda rs: len(rs) >= 5)
        by_item = {r["item_id"]: r for r in routed}
        assert "boot" not in by_item, "a trusted item is already labelled and is not routed"
        assert by_item["sure"]["tier"] == "auto"
        assert by_item["likely"]["tier"] == "single" and by_item["likely"]["required_annotators"] == 1
        assert by_item["unsure"]["tier"] == "multi" and by_item["unsure"]["required_annotators"] == 3
        assert by_item["coin"]["tier"] == "expert" and any("too close" in r for r in by_item["coin"]["reasons"])
        assert by_item["gold"]["golden"] and by_item["gold"]["required_annotators"] == 0

        # Human-verified pre-labels become threshold evidence; a change is stored with its evidence.
        finals = [
            LabelFinalized(producer="test", project="rt", item_id=f"v{i}", label="a", version=1,
                           provenance=Provenance.SINGLE_REVIEW, confidence=0.9, human_labels=1, expert_labels=0,
                           prelabel=LabelScore(label="a" if i % 2 else "b", probability=0.96), verified=True)
            for i in range(10)
        ]
        await env.publish_events(finals)

        async def changed() -> int:
            return await runtime.db["threshold_changes"].count_documents({"project": "rt"})

        await eventually(changed)
        change = await runtime.db["threshold_changes"].find_one({"project": "rt"})
        assert change["new"]["auto_accept"] > change["old"]["auto_accept"], "half wrong at 0.96: auto must get stricter"
        assert change["evidence"]["changes"][0]["n"] >= 5

        # A disagreement flag sends the item to an expert with the neighbours as reasoning.
        await env.publish_events([
            LabelFinalized(producer="test", project="rt", item_id="boot", label="b", version=1,
                           provenance=Provenance.IMPORTED, confidence=1.0, human_labels=0, expert_labels=0,
                           verified=False),
        ])

        async def indexed() -> bool:
            indexes = runtime.component.cache.indexes
            return indexes.get("rt") is not None and len(indexes["rt"]) > 0

        await eventually(indexed)
        await env.publish_events([
            QcFlagged(producer="test", project="rt", item_id="unsure", subject=FlagSubject.ITEM, subject_id="unsure",
                      kind=FlagKind.DISAGREEMENT, message="split vote"),
        ])
        again = await env.read("item.routed", lambda rs: sum(r["item_id"] == "unsure" for r in rs) >= 2)
        rerouted = [r for r in again if r["item_id"] == "unsure"][-1]
        assert rerouted["tier"] == "expert"
        assert any("disagree" in r for r in rerouted["reasons"])
        assert rerouted["neighbours"] and rerouted["neighbours"][0]["item_id"] == "boot"
    finally:
        await runtime.stop()


async def test_an_item_identical_to_a_labelled_one_is_routed_not_dead_lettered(env: Env) -> None:
    """float32 similarity of a vector with itself comes out as 1.0000001 (seed 0 here); the crash run
    dead-lettered such a duplicate text before the router clamped it to a cosine."""
    runtime = create_app(env.settings(RouterSettings))
    await runtime.start()
    try:
        await env.publish_events([ProjectConfigured(producer="test", project="rt", labels=LABELS, guideline_version=1)])
        await env.publish_events([
            _pre("twin-a", [("a", 0.9), ("b", 0.1)], seed=0),
            LabelFinalized(producer="test", project="rt", item_id="twin-a", label="a", version=1,
                           provenance=Provenance.IMPORTED, confidence=1.0, human_labels=0, expert_labels=0,
                           verified=False),
        ])

        async def twin_a_indexed() -> bool:
            doc = await runtime.db["items"].find_one({"_id": "rt/twin-a"})
            return bool(doc and "label" in doc and "embedding" in doc)

        await eventually(twin_a_indexed)
        await env.publish_events([_pre("twin-b", [("a", 0.9), ("b", 0.1)], seed=0)])
        routed = await env.read("item.routed", lambda rs: any(r["item_id"] == "twin-b" for r in rs))
        twin = next(r for r in routed if r["item_id"] == "twin-b")
        assert twin["neighbours"][0]["item_id"] == "twin-a" and twin["neighbours"][0]["similarity"] <= 1.0
        assert not await env.read_all("deadletter")
    finally:
        await runtime.stop()


async def test_a_golden_item_is_never_shown_as_a_neighbour(env: Env) -> None:
    """A golden item's final label is its answer key: shown as a neighbour, an expert would see the answer before
    the item reaches them as a golden check. Neither the live index nor one rebuilt at start may hold it."""
    await env.publish_events([ProjectConfigured(producer="test", project="rt", labels=LABELS, guideline_version=1)])
    await env.publish_events([
        _pre("gold", [("a", 0.9), ("b", 0.1)], seed=0, golden=True),
        _pre("plain", [("a", 0.9), ("b", 0.1)], seed=1),
        LabelFinalized(producer="test", project="rt", item_id="gold", label="a", version=1, golden=True,
                       provenance=Provenance.IMPORTED, confidence=1.0, human_labels=0, expert_labels=0, verified=False),
        LabelFinalized(producer="test", project="rt", item_id="plain", label="b", version=1,
                       provenance=Provenance.IMPORTED, confidence=1.0, human_labels=0, expert_labels=0, verified=False),
    ])
    for attempt in ("live", "restored"):
        runtime = create_app(env.settings(RouterSettings))
        await runtime.start()
        try:
            async def both_labelled() -> bool:
                docs = await runtime.db["items"].find({"label": {"$exists": True},
                                                       "embedding": {"$exists": True}}).to_list(None)
                return len(docs) == 2

            await eventually(both_labelled)
            # The same vector as the golden item: it would be the nearest neighbour by far.
            await env.publish_events([_pre(f"look-{attempt}", [("a", 0.9), ("b", 0.1)], seed=0)])
            routed = await env.read("item.routed", lambda rs: any(r["item_id"] == f"look-{attempt}" for r in rs))
            shown = next(r for r in routed if r["item_id"] == f"look-{attempt}")["neighbours"]
            assert [n["item_id"] for n in shown] == ["plain"], (attempt, shown)
        finally:
            await runtime.stop()
