"""A replica's short memory of documents it read, so that every RPC does not read them again.

The gateway read the caller's annotator document (by token hash, a scan on FerretDB 1.24) and the project on
every LeaseTask and SubmitLabel: four of a cycle's ~26 round trips (bench/lease_path.py). A document read here
is reused for at most `seconds`; what this replica changes itself it forgets at once (`forget`), and a change
made by another replica (a suspension, a new token, new guidelines) is seen within `seconds`. Only found
documents are kept: an unknown token or project is asked again each time, so a new annotator works at once.

Hand-written rather than cachetools.TTLCache: it is a dict and a clock, and `forget_where` (every token of
one annotator) is not a cache-library operation.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

# How long a replica trusts an annotator or project document it read: the bound on how late another replica's
# suspension, token rotation or guideline change reaches this one's callers.
RECENT_SECONDS = 1.0
MAX_ENTRIES = 100_000  # past this the memory is cleared rather than grown (a flood of distinct tokens)


class Recent:
    def __init__(self, seconds: float = RECENT_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._docs: dict[Any, tuple[float, dict[str, Any]]] = {}

    async def get(self, key: Any, read: Callable[[], Awaitable[dict[str, Any] | None]]) -> dict[str, Any] | None:
        """The document read for `key` less than `seconds` ago, else `read()` (kept when found)."""
        now = self._clock()
        hit = self._docs.get(key)
        if hit is not None and now - hit[0] < self.seconds:
            return hit[1]
        doc = await read()
        if doc is None:
            self._docs.pop(key, None)
            return None
        if len(self._docs) >= MAX_ENTRIES:
            self._docs.clear()
        self._docs[key] = (now, doc)
        return doc

    def forget(self, key: Any) -> None:
        self._docs.pop(key, None)

    def forget_where(self, match: Callable[[dict[str, Any]], bool]) -> None:
        for key in [k for k, (_, doc) in self._docs.items() if match(doc)]:
            del self._docs[key]
