"""qc on a spans project against the real broker and FerretDB: auto, single review, consensus by merged spans,
an escalated override, and golden answers scored on every span."""

from __future__ import annotations

import pytest

from schemas.events import ItemIngested, ItemRouted, LabelScore, LabelSubmitted, ProjectConfigured, TextPayload
from schemas.events import Thresholds, Tier
from schemas.spans import SPANS_LABEL, Span, TaskType
from services.qc.app import create_app
from services.qc.domain.spans import span_agreement
from services.qc.settings import QcSettings
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration
P = "ner"
TEXT = "Ana flew to Lima"
ANA, LIMA = Span(start=0, end=3, label="person"), Span(start=12, end=16, label="location")


def _routed(item: str, tier: Tier, required: int, spans: tuple[Span, ...]) -> ItemRouted:
    return ItemRouted(producer="test", project=P, item_id=item, tier=tier, required_annotators=required,
                      model_version=1, top_k=(LabelScore(label=SPANS_LABEL, probability=0.7),),
                      thresholds=Thresholds(), spans=spans)


def _label(item: str, annotator: str, spans: tuple[Span, ...], role: str = "annotator",
           golden: bool = False) -> LabelSubmitted:
    return LabelSubmitted(producer="test", project=P, item_id=item, task_id=f"t-{item}-{annotator}",
                          annotator_id=annotator, role=role, label=SPANS_LABEL, time_spent_ms=5000,
                          guideline_version=1, idempotency_key=f"{item}-{annotator}", golden=golden, spans=spans)


def _spans(final: dict) -> list[tuple[int, int, str]]:
    return [(s["start"], s["end"], s["label"]) for s in final["spans"]]


async def test_spans_items_get_final_spans(env: Env) -> None:
    runtime = create_app(env.settings(QcSettings, agreement_every=4, agreement_min_items=2, min_span_f1=0.9))
    await runtime.start()
    try:
        await env.publish_events([ProjectConfigured(producer="test", project=P, labels=("person", "location"),
                                                    guideline_version=1, task=TaskType.SPANS)])
        items = ["auto", "confirmed", "override", "merged", "split", "gold"]
        await env.publish_events(
            [ItemIngested(producer="test", project=P, item_id=i, payload=TextPayload(text=TEXT)) for i in items[:-1]]
            + [ItemIngested(producer="test", project=P, item_id="gold", payload=TextPayload(text=TEXT),
                            golden_spans=(ANA, LIMA))]
            + [_routed("auto", Tier.AUTO, 0, (ANA, LIMA)), _routed("confirmed", Tier.SINGLE, 1, (ANA,)),
               _routed("override", Tier.SINGLE, 1, (ANA,)), _routed("merged", Tier.MULTI, 3, (ANA,)),
               _routed("split", Tier.MULTI, 3, ())])
        finals = await env.read("label.finalized", lambda rs: {"auto", "gold"} <= {r["item_id"] for r in rs})
        auto = next(f for f in finals if f["item_id"] == "auto")
        assert auto["label"] == SPANS_LABEL and auto["provenance"] == "auto" and _spans(auto) == [
            (0, 3, "person"), (12, 16, "location")]
        assert next(f for f in finals if f["item_id"] == "gold")["provenance"] == "imported"

        both = (ANA, LIMA)
        await env.publish_events([
            _label("confirmed", "a1", (ANA,)), _label("override", "a1", both),
            _label("merged", "a1", both), _label("merged", "a2", both), _label("merged", "a3", both),
            _label("split", "a1", both), _label("split", "a2", (ANA,)), _label("split", "a3", (LIMA,)),
            _label("gold", "a1", both, golden=True), _label("gold", "a2", (ANA,), golden=True),
        ])
        finals = await env.read("label.finalized",
                                lambda rs: {"confirmed", "merged"} <= {r["item_id"] for r in rs})
        final = {f["item_id"]: f for f in finals}
        assert final["confirmed"]["provenance"] == "single_review" and _spans(final["confirmed"]) == [(0, 3, "person")]
        assert final["confirmed"]["verified"] and final["confirmed"]["prelabel"]["label"] == SPANS_LABEL
        assert final["merged"]["provenance"] == "consensus" and len(final["merged"]["spans"]) == 2
        flags = await env.read("qc.flagged", lambda rs: {"override", "split"} <= {r["item_id"] for r in rs})
        assert {f["item_id"]: f["kind"] for f in flags if f["subject"] == "item"} == {
            "override": "disagreement", "split": "disagreement"}

        await env.publish_events([_label("override", "x1", both, role="expert"),
                                  _label("split", "x1", (ANA,), role="expert")])
        finals = await env.read("label.finalized", lambda rs: {"override", "split"} <= {r["item_id"] for r in rs})
        final = {f["item_id"]: f for f in finals}
        assert final["override"]["provenance"] == "expert" and len(final["override"]["spans"]) == 2
        assert _spans(final["split"]) == [(0, 3, "person")]

        evidence = await env.read("qc.evidence", lambda rs: len([r for r in rs if r["kind"] == "golden"]) >= 2)
        golden = {r["annotator"]: r["correct"] for r in evidence if r["kind"] == "golden"}
        assert golden == {"a1": True, "a2": False}, "a golden answer is right only with every span"

        # Agreement is span F1 between answers to one item: 'split' and the golden item pull it under 0.9.
        flags = await env.read("qc.flagged", lambda rs: any(r["kind"] == "low_agreement" for r in rs))
        low = next(f for f in flags if f["kind"] == "low_agreement")
        assert low["subject"] == "dataset" and 0.5 < low["evidence"]["span_f1"] < 0.9
        stored = await runtime.db["agreement"].find_one({"_id": f"{P}/all"})
        assert stored["multiply_labelled"] >= 2 and stored["pairs"][0]["a"] == "a1"
        # Beside it, Krippendorff's alpha on the words' entity types, over the texts qc kept from item.ingested.
        labels = sorted([d async for d in runtime.db["labels"].find({"project": P, "expert": False})],
                        key=lambda d: (d["at"], d["_id"]))[:stored["labels"]]
        records = [(d["item_id"], d["annotator"], d["label"]) for d in labels]
        expected = span_agreement(records, {i: TEXT for i in items})
        assert stored["alpha_items"] == expected.alpha_items >= 2
        assert stored["krippendorff_alpha"] == pytest.approx(expected.alpha) and expected.alpha < 1.0
    finally:
        await runtime.stop()
