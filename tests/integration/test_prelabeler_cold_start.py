"""Cold start on the real broker and FerretDB: items pre-labelled before the project's first model get that model's
pre-label when it arrives and are routed again; an item that was already final is left alone."""

from __future__ import annotations

import pytest

from schemas.events import LabelFinalized, ProjectConfigured, Provenance
from services.prelabeler.app import create_app as create_prelabeler
from services.prelabeler.settings import PrelabelerSettings
from services.router.app import create_app as create_router
from services.router.settings import RouterSettings
from tests.conftest import eventually
from tests.kafka_helpers import Env
from tests.prelabeler_helpers import LABELS, item_event, model_event

pytestmark = pytest.mark.integration


async def test_first_model_prelabels_and_reroutes_open_items_only(env: Env) -> None:
    prelabeler = create_prelabeler(env.settings(PrelabelerSettings, encoder="hashing", max_wait_ms=20))
    router = create_router(env.settings(RouterSettings))
    await prelabeler.start()
    await router.start()
    try:
        await env.publish_events([ProjectConfigured(producer="test", project="pl", labels=LABELS, guideline_version=1)])
        texts = {"open1": "hello there, good morning", "open2": "terrible service, I want a refund",
                 "done": "hi friend"}
        await env.publish_events([item_event(i, t) for i, t in texts.items()])
        routed = await env.read("item.routed", lambda rs: set(texts) <= {r["item_id"] for r in rs})
        assert {r["model_version"] for r in routed} == {None}  # no model yet: consensus from scratch
        assert {r["tier"] for r in routed} == {"multi"}

        # "done" becomes final (as qc would decide) before any model exists.
        await env.publish_events([LabelFinalized(
            producer="test", project="pl", item_id="done", label="greeting", version=1,
            provenance=Provenance.CONSENSUS, confidence=1.0, human_labels=3, expert_labels=0, verified=False)])
        prelabels = prelabeler.component.rt.db["prelabels"]

        async def marked_final() -> bool:
            doc = await prelabels.find_one({"_id": "pl/done"})
            return bool(doc and doc.get("final"))

        await eventually(marked_final)

        await env.publish_events([model_event(1)])
        out = await env.read("item.prelabeled", lambda rs: {"open1", "open2"} <= {
            r["item_id"] for r in rs if r["model_version"] == 1})
        again = {r["item_id"]: r for r in out if r["model_version"] == 1}
        # One sweep publishes every waiting item of the project in one batch: "done" would be among them.
        assert set(again) == {"open1", "open2"}
        for record in again.values():
            assert {s["label"] for s in record["top_k"]} == set(LABELS)
            assert sum(s["probability"] for s in record["top_k"]) == pytest.approx(1.0, abs=1e-3)
            assert len(record["embedding"]) == 384
        first = {r["item_id"]: r for r in out if r["model_version"] is None}
        assert again["open1"]["embedding"] == pytest.approx(first["open1"]["embedding"], abs=1e-5)

        rerouted = await env.read("item.routed", lambda rs: {"open1", "open2"} <= {
            r["item_id"] for r in rs if r["model_version"] == 1})
        assert {r["item_id"] for r in rerouted if r["model_version"] == 1} == {"open1", "open2"}
        assert all(r["top_k"] for r in rerouted if r["model_version"] == 1)

        # The documents left the cold set; a redelivered model (or the next one) finds nothing left to do.
        assert prelabeler.registry.get_sample_value(
            "labelmesh_prelabeler_cold_start_items_total", {"project": "pl"}) == 2
        assert await prelabels.count_documents({"project": "pl", "cold": True}) == 1  # "done" only
        doc = await prelabels.find_one({"_id": "pl/open1"})
        assert doc["model_version"] == 1 and "embedding" not in doc
        await env.publish_events([model_event(2)])

        async def serving_v2() -> bool:
            return prelabeler.component.active["pl"].version == 2 and await prelabeler.component.store.models.find_one(
                {"_id": "pl:2"}) is not None

        await eventually(serving_v2)
        assert prelabeler.registry.get_sample_value(
            "labelmesh_prelabeler_cold_start_items_total", {"project": "pl"}) == 2
        after = await env.read_all("item.prelabeled")
        assert not [r for r in after if r["item_id"] == "done" and r["model_version"] is not None]
    finally:
        await router.stop()
        await prelabeler.stop()
