"""Model versions on the real FerretDB: two trainers registering at once never take the same number."""

from __future__ import annotations

import asyncio

import pytest

from services.trainer.registry import model_key, next_version, register
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration


async def test_two_concurrent_registrations_cannot_both_take_version_n(env: Env) -> None:
    mongo = env.mongo()
    models = mongo[f"{env.namespace}_trainer"]["models"]
    try:
        assert await next_version(models, "pv") == 1
        # Both trainers computed 1 as the next version (neither saw the other's model yet).
        taken = await asyncio.gather(*(register(models, "pv", lambda v, who=who: {"by": who}, version=1)
                                       for who in ("a", "b")))
        assert sorted(taken) == [1, 2]
        docs = {d["_id"]: d async for d in models.find({"project": "pv"})}
        assert set(docs) == {model_key("pv", 1), model_key("pv", 2)}
        assert {docs[model_key("pv", v)]["by"] for v in taken} == {"a", "b"}, "each kept its own model"
        assert all(docs[model_key("pv", v)]["version"] == v for v in taken)
        # A third, with a stale guess, moves past both; the next guess is the highest plus one.
        assert await register(models, "pv", lambda v: {"by": "c"}, version=1) == 3
        assert await next_version(models, "pv") == 4
        assert await next_version(models, "other") == 1, "versions count per project"
    finally:
        await mongo.close()
