"""Dead letters end to end: a poison event lands in the dead-letter topic, is shown, and is re-driven once fixed."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

from schemas.events import ItemPrelabeled, LabelScore, ProjectConfigured
from services.router.app import create_app
from services.router.settings import RouterSettings
from tests.conftest import eventually
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration


async def _cli(env: Env, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "labelmesh.cli", *args, env={**os.environ, **env.environ()},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_dead_letter_is_shown_and_redriven_once_its_cause_is_fixed(env: Env) -> None:
    runtime = create_app(env.settings(RouterSettings))
    runtime.component.catalog.wait_s = 0.5  # how long an event for an unknown project waits before dead-lettering
    await runtime.start()
    try:
        orphan = ItemPrelabeled(producer="test", project="late", item_id="o1", model_version=1, encoder="hashing-4",
                                top_k=(LabelScore(label="a", probability=0.99),), embedding=(1.0, 0.0, 0.0, 0.0))
        await env.publish_events([orphan])
        letters = await env.read("deadletter", lambda rs: len(rs) >= 1)
        assert "unknown project 'late'" in letters[0]["reason"]
        assert letters[0]["consumer"] == f"{env.namespace}.router" and letters[0]["topic"].endswith("item.prelabeled")

        shown = [json.loads(x) for x in (await _cli(env, "events", "deadletter", "--project", "late")).splitlines()]
        assert len(shown) == 1 and shown[0]["original"]["event_id"] == orphan.event_id

        # The fix: the project gets configured. Until re-driven, the item stays unrouted.
        await env.publish_events([ProjectConfigured(producer="test", project="late", labels=("a", "b"),
                                                    guideline_version=1)])
        await eventually(lambda: runtime.db["projects"].find_one({"_id": "late"}))
        assert await runtime.db["decisions"].count_documents({}) == 0

        listed = await _cli(env, "replay", "--dead-letters", "--dry-run")
        assert "would re-drive 1 dead letter" in listed and orphan.item_id not in str(await env.read_all("item.routed"))
        done = await _cli(env, "replay", "--dead-letters", "--consumer", "router")
        assert "re-drove 1 dead letter" in done

        routed = await env.read("item.routed", lambda rs: len(rs) >= 1)
        # A fresh project has no verified pre-labels yet, so even a 0.99 pre-label goes to one person, not auto.
        assert routed[0]["item_id"] == "o1" and routed[0]["tier"] == "single"
        assert await runtime.db["decisions"].count_documents({"item_id": "o1"}) == 1
        again = await _cli(env, "replay", "--dead-letters")
        assert "re-drove 0 dead letter" in again, "each dead letter is re-driven once"
        assert len(await env.read_all("deadletter")) == 1, "the re-driven event did not fail again"
    finally:
        await runtime.stop()
