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


async def _count_at_least(read, n: int) -> bool:
    return len(await read()) >= n


async def test_routes_by_confidence_and_reacts_to_feedback(env: Env) -> None:
    runtime = create_app(env.settings(RouterSettings, relearn_every=5, min_evidence=5, spot_check_rate=0.05))
    await runtime.start()
    try:
        # A 30% target, so that 20 clean reviews can show a region under it (a 2% target takes 149).
        await env.publish_events([ProjectConfigured(producer="test", project="rt", labels=LABELS, guideline_version=1,
                                                    target_auto_error=0.3)])
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
        # No verified pre-label yet: nothing is auto-accepted, however confident the model (thresholds.NO_EVIDENCE).
        assert by_item["sure"]["tier"] == "single" and by_item["sure"]["thresholds"]["auto_accept"] == 1.0
        assert by_item["likely"]["tier"] == "single" and by_item["likely"]["required_annotators"] == 1
        assert by_item["unsure"]["tier"] == "multi" and by_item["unsure"]["required_annotators"] == 3
        assert by_item["coin"]["tier"] == "expert" and any("too close" in r for r in by_item["coin"]["reasons"])
        assert by_item["gold"]["golden"] and by_item["gold"]["required_annotators"] == 0

        def verified(first: int, n: int, wrong: bool) -> list[LabelFinalized]:
            return [LabelFinalized(producer="test", project="rt", item_id=f"v{i}", label="a", version=1,
                                   provenance=Provenance.SINGLE_REVIEW, confidence=0.9, human_labels=1,
                                   expert_labels=0, prelabel=LabelScore(label="b" if wrong else "a", probability=0.99),
                                   verified=True)
                    for i in range(first, first + n)]

        async def changes() -> list[dict[str, object]]:
            return [c async for c in runtime.db["threshold_changes"].find({"project": "rt"}).sort("at")]

        # Human-verified pre-labels become threshold evidence; 20 clean ones at 0.99 open auto-accept just under
        # them, and the change is stored with its evidence.
        await env.publish_events(verified(0, 20, wrong=False))
        await eventually(changes)
        (opened,) = await changes()
        assert opened["old"]["auto_accept"] == 1.0 and opened["new"]["auto_accept"] == 0.98, opened
        assert opened["evidence"]["changes"][0]["n"] >= 5
        await env.publish_events([_pre("sure-now", [("a", 0.99), ("b", 0.01)], seed=7)])
        now = await env.read("item.routed", lambda rs: any(r["item_id"] == "sure-now" for r in rs))
        assert next(r for r in now if r["item_id"] == "sure-now")["tier"] == "auto"
        # "sure", queued for a review before the border opened, is promoted to auto; the others stay with people.
        routed = await env.read("item.routed", lambda rs: any(r["item_id"] == "sure" and r["promoted"] for r in rs))
        promoted = [r for r in routed if r["promoted"]]
        assert [(r["item_id"], r["tier"], r["required_annotators"]) for r in promoted] == [("sure", "auto", 0)]
        assert "1.000 -> 0.980" in promoted[0]["reasons"][-1]
        assert await runtime.db["reroutes"].count_documents({"project": "rt", "promoted": True}) == 1

        # Then wrong ones at the same confidence: the evidence refutes the border and auto-accept goes off again.
        await env.publish_events(verified(20, 20, wrong=True))
        await eventually(lambda: _count_at_least(changes, 2))
        assert (await changes())[-1]["new"]["auto_accept"] == 1.0, "wrong at 0.99: auto must get stricter"

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
                      kind=FlagKind.DISAGREEMENT, message="split vote", evidence={"votes": [["x", "b"], ["y", "a"]]}),
        ])
        again = await env.read("item.routed", lambda rs: sum(r["item_id"] == "unsure" for r in rs) >= 2)
        rerouted = [r for r in again if r["item_id"] == "unsure"][-1]
        assert rerouted["tier"] == "expert"
        assert any("disagree" in r for r in rerouted["reasons"])
        assert rerouted["neighbours"] and rerouted["neighbours"][0]["item_id"] == "boot"
        # A human voted against its pre-label: until the expert's final replaces it, that counts as an error.

        async def provisional() -> dict[str, object] | None:
            return await runtime.db["evidence"].find_one({"_id": "rt/unsure"})

        row = await eventually(provisional)
        assert (row["correct"], row["confidence"], row["weight"]) == (False, 0.40, 1.0)

        # A second opinion: two ordinary labels, the first reviewer's counted ("twin" is next to "boot", so no
        # out-of-distribution rule sends it to an expert instead).
        await env.publish_events([_pre("twin", [("a", 0.80), ("b", 0.15)], seed=5)])
        await env.read("item.routed", lambda rs: any(r["item_id"] == "twin" for r in rs))
        await env.publish_events([
            QcFlagged(producer="test", project="rt", item_id="twin", subject=FlagSubject.ITEM, subject_id="twin",
                      kind=FlagKind.SECOND_OPINION, message="doubted override",
                      evidence={"votes": [["rev", "b"]], "prelabel": ["a", 0.80]}),
        ])
        again = await env.read("item.routed", lambda rs: sum(r["item_id"] == "twin" for r in rs) >= 2)
        asked = [r for r in again if r["item_id"] == "twin"][-1]
        assert (asked["tier"], asked["required_annotators"], asked["counted"]) == ("multi", 2, ["rev"])
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
