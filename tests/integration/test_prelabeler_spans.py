"""The prelabeler on a spans project: no model, no spans (cold start); a span tagger's spans and item confidence."""

from __future__ import annotations

import pytest

from schemas.events import ItemIngested, ProjectConfigured, TextPayload
from schemas.spans import SPANS_LABEL, Span, TaskType
from services.prelabeler.app import create_app
from services.prelabeler.settings import PrelabelerSettings
from tests.conftest import eventually
from tests.kafka_helpers import Env
from tests.prelabeler_helpers import SPAN_TYPES, item_event, span_model_event

pytestmark = pytest.mark.integration


async def test_a_spans_project_is_prelabelled_by_its_span_tagger(env: Env) -> None:
    runtime = create_app(env.settings(PrelabelerSettings, encoder="hashing", max_wait_ms=20))
    await runtime.start()
    try:
        await env.publish_events([ProjectConfigured(producer="test", project="ner", labels=SPAN_TYPES,
                                                    guideline_version=1, task=TaskType.SPANS)])
        await env.publish_events([item_event("cold", "Ana flew to Rome today", project="ner")])
        out = await env.read("item.prelabeled", lambda rs: any(r["item_id"] == "cold" for r in rs))
        cold = next(r for r in out if r["item_id"] == "cold")
        assert cold["model_version"] is None and cold["spans"] is None and cold["top_k"] == []

        await env.publish_events([span_model_event(1)])

        async def serving() -> bool:
            model = runtime.component.active.get("ner")
            return model is not None and model.tagger is not None

        await eventually(serving)
        # Cold start: the item that waited for the first model gets its spans from the text the cold set kept,
        # exactly as the same text ingested now is pre-labelled.
        await env.publish_events([item_event("same", "Ana flew to Rome today", project="ner")])
        out = await env.read("item.prelabeled", lambda rs: {("cold", 1), ("same", 1)} <= {
            (r["item_id"], r["model_version"]) for r in rs})
        again = next(r for r in out if r["item_id"] == "cold" and r["model_version"] == 1)
        same = next(r for r in out if r["item_id"] == "same")
        assert again["spans"] and again["spans"] == same["spans"] and again["top_k"] == same["top_k"]
        assert again["embedding"] == pytest.approx(cold["embedding"], abs=1e-5)
        prelabels = runtime.component.rt.db["prelabels"]
        doc = await prelabels.find_one({"_id": "ner/cold"})
        assert doc["model_version"] == 1 and "text" not in doc and "cold" not in doc
        assert runtime.registry.get_sample_value(
            "labelmesh_prelabeler_cold_start_items_total", {"project": "ner"}) == 1
        text = "Dee flew to Oslo today"
        golden = ItemIngested(producer="test", project="ner", item_id="gold", payload=TextPayload(text=text),
                              golden_spans=(Span(start=0, end=3, label="person"),))
        await env.publish_events([item_event("warm", text, project="ner"), golden])
        out = await env.read("item.prelabeled", lambda rs: {"warm", "gold"} <= {r["item_id"] for r in rs})
        warm = next(r for r in out if r["item_id"] == "warm")
        assert warm["model_version"] == 1
        assert [(text[s["start"]:s["end"]], s["label"]) for s in warm["spans"]] == [("Dee", "person"),
                                                                                    ("Oslo", "location")]
        assert all(0.0 <= s["confidence"] <= 1.0 for s in warm["spans"])
        (score,) = warm["top_k"]
        assert score["label"] == SPANS_LABEL and 0.0 <= score["probability"] <= 1.0
        assert next(r for r in out if r["item_id"] == "gold")["golden"] is True
    finally:
        await runtime.stop()
