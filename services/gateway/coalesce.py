"""Concurrent callers' writes done together: what arrives while one batch is written goes in the next one.

No timer and no size to wait for: a caller alone is written at once, and under load each batch takes whatever
queued up during the one before, so a round trip is shared by every caller in it (bench/lease_path.py: the
submissions of 50 annotators took one insert, one publish and one history insert each before). A batch that
fails fails each of its callers, who retry as they would have after their own write failed. Nothing here
decides anything: each caller's result is the database's answer for its own document.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from pymongo.asynchronous.collection import AsyncCollection

from labelmesh.runtime.mongo import find_by_ids

T = TypeVar("T")
R = TypeVar("R")


def _retrieved(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


class Coalescer(Generic[T, R]):
    """`await coalescer(item)` runs `write(batch)` with every item queued meanwhile; returns this item's result.

    `write` returns one result per item, in order. At most `max_batch` items per call of `write`.
    """

    def __init__(self, write: Callable[[Sequence[T]], Awaitable[Sequence[R]]], max_batch: int = 64) -> None:
        self._write = write
        self._max_batch = max_batch
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)  # a caller cancelled meanwhile never reads its batch's error
        self._queue.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._drain())
        # shield: a caller that is cancelled (its client left) does not cancel the batch others wait on.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:self._max_batch], self._queue[self._max_batch:]
            try:
                results = await self._write([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"write returned {len(results)} results for {len(batch)} items")
            except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)


class ByIds:
    """Concurrent callers' lookups by `_id` in one collection as one `_id $in` query per batch (find_by_ids,
    which FerretDB as built here and MongoDB answer through the `_id` index). Each caller's answer is the
    documents as the query found them, issued after its call: what its own find_one would have read."""

    def __init__(self, collection: AsyncCollection, projection: dict[str, Any] | None = None) -> None:
        self._collection = collection
        self._projection = projection
        self._reads: Coalescer[Sequence[Any], list[dict[str, Any]]] = Coalescer(self._read)

    async def one(self, _id: Any) -> dict[str, Any] | None:
        found = await self._reads([_id])
        return found[0] if found else None

    async def many(self, ids: Sequence[Any]) -> list[dict[str, Any]]:
        """The documents with these `_id`s, in the order of `ids`, missing ones left out."""
        return await self._reads(ids) if ids else []

    async def _read(self, batch: Sequence[Sequence[Any]]) -> list[list[dict[str, Any]]]:
        found = {doc["_id"]: doc for doc in await find_by_ids(
            self._collection, [i for ids in batch for i in ids], self._projection)}
        # Each caller gets its own copies: a caller that changes its document changes nobody else's.
        return [[dict(found[i]) for i in dict.fromkeys(ids) if i in found] for ids in batch]
