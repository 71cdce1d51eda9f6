"""The gateway queue's lock (TaskQueue._serial): pure asyncio, no database touched."""

from __future__ import annotations

import asyncio

from services.gateway.queue import TaskQueue


def _queue() -> TaskQueue:
    # The collections are never used here: only the lock discipline is under test.
    return TaskQueue({"tasks": None, "leases": None, "golden_seen": None, "item_tasks": None}, 60.0)  # type: ignore[arg-type]


async def test_work_of_a_caller_cancelled_while_waiting_is_dropped_and_the_lock_is_freed() -> None:
    queue, ran = _queue(), []

    async def slow() -> str:
        await asyncio.sleep(0.2)
        ran.append("slow")
        return "slow"

    async def other() -> str:
        ran.append("other")
        return "other"

    first = asyncio.create_task(queue._serial(slow))
    await asyncio.sleep(0.02)
    waiting = asyncio.create_task(queue._serial(other))
    await asyncio.sleep(0.02)
    waiting.cancel()
    assert await first == "slow"
    await asyncio.sleep(0.05)
    assert ran == ["slow"] and waiting.cancelled()
    assert not queue._lock.locked()
    assert await queue._serial(other) == "other", "the next caller gets the lock"


async def test_work_already_running_finishes_when_its_caller_is_cancelled() -> None:
    queue, done = _queue(), asyncio.Event()

    async def write() -> None:
        await asyncio.sleep(0.1)
        done.set()

    caller = asyncio.create_task(queue._serial(write))
    await asyncio.sleep(0.02)
    caller.cancel()
    await asyncio.wait_for(done.wait(), 1.0)
    await asyncio.sleep(0)
    assert not queue._lock.locked(), "the work released the lock itself"
