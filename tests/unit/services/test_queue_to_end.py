"""The queue's cancellation safety (services.gateway.queue.to_end): pure asyncio, no database touched."""

from __future__ import annotations

import asyncio

import pytest

from services.gateway.queue import to_end


async def test_work_runs_to_its_end_when_its_caller_is_cancelled() -> None:
    started, release, ran = asyncio.Event(), asyncio.Event(), []

    async def write() -> None:
        started.set()
        await release.wait()
        ran.append("write")

    caller = asyncio.create_task(to_end(write()))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()
    while not ran:  # the shielded work finishes on its own
        await asyncio.sleep(0)
    assert ran == ["write"]


async def test_the_result_and_errors_reach_a_caller_that_stays() -> None:
    async def answer() -> int:
        return 42

    async def fail() -> None:
        raise ValueError("boom")

    assert await to_end(answer()) == 42
    with pytest.raises(ValueError, match="boom"):
        await to_end(fail())
