"""A canonical digest of a service's database, to show a replayed service rebuilt the same state.

Excluded, because they record *when* this process did something rather than *what* it decided:
fields named `at` or ending in `_at` (processing times such as a final label's `at`, `suspended_at`,
`created_at`), `outbox` fields (copies of published events kept to publish again after a crash, with the
event that caused them, which depends on how the stream was batched), qc's `recent_facts` (the latest fact ids
a tally counted, in the order they were counted) and generated ObjectIds (`insert_one`
of a document without an `_id`). Everything else, including the inbox of processed event ids, takes part.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

VOLATILE = "<volatile>"


def volatile_field(name: str) -> bool:
    return name in ("at", "outbox", "recent_facts") or name.endswith("_at")


def canonical(value: Any) -> Any:
    """A JSON-able value with volatile fields blanked (kept as markers, so their presence still counts)."""
    if isinstance(value, Mapping):
        return {str(k): VOLATILE if volatile_field(str(k)) else canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, ObjectId):
        return VOLATILE
    if isinstance(value, bytes):
        return {"$bytes": hashlib.sha256(value).hexdigest()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def digest_documents(collections: Mapping[str, Iterable[Mapping[str, Any]]]) -> dict[str, str]:
    """sha256 per collection over its documents' canonical JSON, sorted (so storage order does not matter)."""
    result = {}
    for name in sorted(collections):
        lines = sorted(json.dumps(canonical(doc), sort_keys=True, default=str) for doc in collections[name])
        result[name] = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return result


async def read_collections(db: AsyncDatabase, skip: Iterable[str] = ()) -> dict[str, list[dict[str, Any]]]:
    skipped = set(skip)
    names = sorted(n for n in await db.list_collection_names() if not n.startswith("system.") and n not in skipped)
    return {name: [doc async for doc in db[name].find()] for name in names}


async def database_digest(db: AsyncDatabase, skip: Iterable[str] = ()) -> dict[str, str]:
    return digest_documents(await read_collections(db, skip))
