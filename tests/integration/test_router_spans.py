"""The router on a spans project: tiers by the item confidence, spans carried to the gateway, and a verified
pre-label counted right only when every span is."""

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
from schemas.spans import SPANS_LABEL, Span, TaskType
from services.router.app import create_app
from services.router.settings import RouterSettings
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration
TYPES = ("person", "location")
ANA, LIMA = Span(start=0, end=3, label="person", confidence=0.9), Span(start=12, end=16, label="location")


def _vec(seed: int) -> tuple[float, ...]:
    v = np.random.default_rng(seed).normal(size=16)
    return tuple(float(x) for x in v / np.linalg.norm(v))


def _pre(item_id: str, confidence: float, spans: tuple[Span, ...], seed: int) -> ItemPrelabeled:
    return ItemPrelabeled(producer="test", project="ner", item_id=item_id, model_version=1, encoder="hashing-16",
                          top_k=(LabelScore(label=SPANS_LABEL, probability=confidence),), embedding=_vec(seed),
                          spans=spans)


def _final(item_id: str, spans: tuple[Span, ...]) -> LabelFinalized:
    return LabelFinalized(producer="test", project="ner", item_id=item_id, label=SPANS_LABEL, version=1,
                          provenance=Provenance.SINGLE_REVIEW, confidence=0.9, human_labels=1, expert_labels=0,
                          prelabel=LabelScore(label=SPANS_LABEL, probability=0.8), verified=True, spans=spans)


async def test_spans_items_are_routed_by_item_confidence_and_judged_by_every_span(env: Env) -> None:
    runtime = create_app(env.settings(RouterSettings))
    await runtime.start()
    try:
        await env.publish_events([ProjectConfigured(producer="test", project="ner", labels=TYPES, guideline_version=1,
                                                    task=TaskType.SPANS)])
        await env.publish_events([_pre("sure", 0.8, (ANA, LIMA), 1), _pre("unsure", 0.3, (ANA,), 2),
                                  _pre("none", 0.9, (), 3)])
        routed = await env.read("item.routed", lambda rs: len(rs) >= 3)
        by_item = {r["item_id"]: r for r in routed}
        assert by_item["sure"]["tier"] == "single" and by_item["unsure"]["tier"] == "multi"
        assert [(s["start"], s["label"]) for s in by_item["sure"]["spans"]] == [(0, "person"), (12, "location")]
        assert by_item["none"]["spans"] == []

        # A boundary or a type that differs, or a span missed, makes the whole pre-label wrong.
        await env.publish_events([_final("sure", (ANA, LIMA.model_copy(update={"confidence": 0.4}))),
                                  _final("unsure", (ANA, LIMA)), _final("none", ())])
        evidence = await env.read("threshold.evidence", lambda rs: len([r for r in rs if r["kind"] == "verified"]) >= 3)
        correct = {r["item_id"]: r["correct"] for r in evidence if r["kind"] == "verified"}
        assert correct == {"sure": True, "unsure": False, "none": True}

        # A re-routed spans item shows its pre-labelled spans again.
        await env.publish_events([QcFlagged(producer="test", project="ner", subject=FlagSubject.ITEM,
                                            subject_id="unsure", item_id="unsure", kind=FlagKind.DISAGREEMENT,
                                            message="spans differ", evidence={"votes": [["a", SPANS_LABEL]]})])
        routed = await env.read("item.routed", lambda rs: len(rs) >= 4)
        again = [r for r in routed if r["item_id"] == "unsure"][-1]
        assert again["tier"] == "expert" and [(s["start"], s["label"]) for s in again["spans"]] == [(0, "person")]
    finally:
        await runtime.stop()
