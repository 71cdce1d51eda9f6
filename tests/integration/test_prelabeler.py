"""The prelabeler against the real broker and FerretDB: pre-labels, dead letters, and model hot swap."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from schemas.events import ProjectConfigured
from services.prelabeler.app import create_app
from services.prelabeler.settings import PrelabelerSettings
from tests.conftest import eventually
from tests.kafka_helpers import Env
from tests.prelabeler_helpers import LABELS, item_event, model_event

pytestmark = pytest.mark.integration


async def test_prelabels_dead_letters_and_swaps_models(env: Env) -> None:
    runtime = create_app(env.settings(PrelabelerSettings, encoder="hashing", max_wait_ms=20))
    await runtime.start()
    try:
        await env.publish_events([ProjectConfigured(producer="test", project="pl", labels=LABELS, guideline_version=1)])
        await env.publish_events([item_event("a", "hello, how are you"), item_event("empty", "   "),
                                  item_event("ghost", "hi", project="nosuchproject")])
        await env.publish("item.ingested", b"\xff\xfe not json", key="garbage")

        out = await env.read("item.prelabeled", lambda rs: any(r["item_id"] == "a" for r in rs))
        first = next(r for r in out if r["item_id"] == "a")
        assert first["model_version"] is None and first["top_k"] == []  # no model yet: embed only
        assert len(first["embedding"]) == 384
        assert abs(float(np.linalg.norm(first["embedding"])) - 1.0) < 1e-3
        # The embedding capacity in use is visible to Prometheus: time per piece, and how many run at once.
        assert runtime.registry.get_sample_value("labelmesh_prelabeler_encode_seconds_count") >= 1
        assert runtime.registry.get_sample_value("labelmesh_prelabeler_encode_workers") >= 1

        letters = await env.read("deadletter", lambda rs: len(rs) >= 3)
        reasons = " | ".join(r["reason"] for r in letters)
        assert "empty text" in reasons and "unknown project 'nosuchproject'" in reasons
        assert "undecodable" in reasons
        garbage = next(r for r in letters if r["key"] == "garbage")
        assert base64.b64decode(garbage["original_b64"]) == b"\xff\xfe not json"

        # A tampered artifact is refused with a flag; the next good one is served from the next batch on.
        await env.publish_events([model_event(1, tamper=True)])
        flags = await env.read("qc.flagged", lambda rs: len(rs) >= 1)
        assert flags[0]["kind"] == "model_rejected" and "checksum" in flags[0]["message"]
        await env.publish_events([model_event(2)])
        service = runtime.component

        async def serving() -> bool:
            return "pl" in service.active and service.active["pl"].version == 2

        await eventually(serving)
        await env.publish_events([item_event("b", "terrible, I want my money back")])
        out = await env.read("item.prelabeled", lambda rs: any(r["item_id"] == "b" for r in rs))
        second = next(r for r in out if r["item_id"] == "b")
        assert second["model_version"] == 2
        assert {s["label"] for s in second["top_k"]} == set(LABELS)
        assert sum(s["probability"] for s in second["top_k"]) == pytest.approx(1.0, abs=1e-3)

        async def recorded() -> bool:
            newest = [event async for event in service.store.newest()]
            return [e.model_version for e in newest] == [2]

        await eventually(recorded)
    finally:
        await runtime.stop()


async def test_a_new_model_reaches_every_replica(env: Env) -> None:
    """Two replicas in one group: after model.updated, items on both replicas' partitions carry its version."""
    settings = env.settings(PrelabelerSettings, encoder="hashing", max_wait_ms=20)
    await env.publish_events([ProjectConfigured(producer="test", project="pl", labels=LABELS, guideline_version=1),
                              model_event(1)])
    replicas = [create_app(settings), create_app(settings)]
    try:
        for runtime in replicas:
            await runtime.start()

        async def serving(version: int) -> bool:
            return all(r.component.active.get("pl") is not None and r.component.active["pl"].version == version
                       for r in replicas)

        async def both_own_items() -> bool:
            held = [r.bus.assignment() for r in replicas]
            return all(held) and sum(map(len, held)) == 3

        await eventually(lambda: serving(1))
        await eventually(both_own_items)
        await env.publish_events([model_event(2)])
        await eventually(lambda: serving(2))

        items = [item_event(f"after{i}", "hello there, good morning") for i in range(24)]
        await env.publish_events(items)
        wanted = {item.item_id for item in items}
        out = await env.read("item.prelabeled", lambda rs: wanted <= {r["item_id"] for r in rs})
        assert {r["model_version"] for r in out if r["item_id"] in wanted} == {2}
        for runtime in replicas:  # each replica pre-labelled some of them
            assert runtime.registry.get_sample_value("labelmesh_prelabeler_items_total", {"project": "pl"}) >= 1

        # A replica started afterwards serves the newest model too.
        late = create_app(settings)
        replicas.append(late)
        await late.start()
        await eventually(lambda: serving(2))
    finally:
        for runtime in replicas:
            await runtime.stop()
