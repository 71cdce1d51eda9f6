"""services/gateway/coalesce.py and recent.py: batching of concurrent writes, and the short per-replica memory."""

from __future__ import annotations

import asyncio

import pytest

from services.gateway.coalesce import Coalescer
from services.gateway.recent import Recent


def test_callers_queued_during_a_write_share_the_next_one() -> None:
    batches: list[list[int]] = []

    async def write(items):
        batches.append(list(items))
        await asyncio.sleep(0)  # a round trip: callers arriving now wait for the next batch
        return [i * 10 for i in items]

    async def main() -> list[int]:
        coalesce = Coalescer(write)
        return await asyncio.gather(*(coalesce(i) for i in range(5)))

    assert asyncio.run(main()) == [0, 10, 20, 30, 40]
    assert batches == [[0, 1, 2, 3, 4]]


def test_a_caller_alone_is_written_at_once_and_batches_respect_max_batch() -> None:
    batches: list[list[int]] = []

    async def write(items):
        batches.append(list(items))
        return list(items)

    async def main() -> None:
        coalesce = Coalescer(write, max_batch=2)
        assert await coalesce(7) == 7
        assert await asyncio.gather(*(coalesce(i) for i in range(5))) == [0, 1, 2, 3, 4]

    asyncio.run(main())
    assert batches == [[7], [0, 1], [2, 3], [4]]


def test_a_failed_write_fails_each_caller_of_its_batch_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def write(items):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("database gone")
        return list(items)

    async def main() -> None:
        coalesce = Coalescer(write)
        results = await asyncio.gather(coalesce(1), coalesce(2), return_exceptions=True)
        assert [type(r) for r in results] == [OSError, OSError]
        assert await coalesce(3) == 3

    asyncio.run(main())


def test_a_write_must_answer_every_item() -> None:
    async def write(items):
        return []

    async def main() -> None:
        with pytest.raises(RuntimeError, match="0 results for 1 items"):
            await Coalescer(write)(1)

    asyncio.run(main())


def test_recent_reuses_a_found_document_within_its_window_only() -> None:
    now = [0.0]
    reads: list[str] = []
    store: dict[str, dict | None] = {"a": {"_id": "ann", "suspended": False}, "x": None}

    async def read(key: str):
        reads.append(key)
        return store[key]

    async def main() -> None:
        recent = Recent(seconds=1.0, clock=lambda: now[0])
        assert await recent.get("a", lambda: read("a")) == {"_id": "ann", "suspended": False}
        store["a"] = {"_id": "ann", "suspended": True}  # changed by another replica
        now[0] = 0.5
        assert (await recent.get("a", lambda: read("a")))["suspended"] is False  # within the window
        now[0] = 1.0
        assert (await recent.get("a", lambda: read("a")))["suspended"] is True  # seen once it has passed
        assert await recent.get("x", lambda: read("x")) is None
        assert await recent.get("x", lambda: read("x")) is None  # an unknown key is asked each time
        store["a"] = {"_id": "ann", "suspended": False}
        recent.forget_where(lambda doc: doc["_id"] == "ann")  # changed here: forgotten at once
        assert (await recent.get("a", lambda: read("a")))["suspended"] is False

    asyncio.run(main())
    assert reads == ["a", "a", "x", "x", "a"]
