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


def _by_id(docs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Canonical documents by their canonical `_id`; one with a generated id by its whole content instead."""
    keyed = {}
    for doc in docs:
        body = canonical(doc)
        ident = body.get("_id")
        keyed[json.dumps(body if ident == VOLATILE else ident, sort_keys=True, default=str)] = body
    return keyed


def diff_documents(before: Mapping[str, Iterable[Mapping[str, Any]]], after: Mapping[str, Iterable[Mapping[str, Any]]],
                   limit: int = 3) -> dict[str, dict[str, Any]]:
    """Where two databases' canonical documents differ, per collection whose digest differs: how many documents
    only one side holds, and for up to `limit` documents present on both sides (by `_id`), the top-level fields
    that differ with both values. Says *what* a rebuild changed, where the digest only says that it did."""
    result: dict[str, dict[str, Any]] = {}
    for name in sorted(set(before) | set(after)):
        old, new = _by_id(before.get(name, ())), _by_id(after.get(name, ()))
        changed = sorted(k for k in old.keys() & new.keys() if old[k] != new[k])
        only_before, only_after = sorted(old.keys() - new.keys()), sorted(new.keys() - old.keys())
        if not (changed or only_before or only_after):
            continue
        examples = {}
        for key in changed[:limit]:
            fields = sorted(f for f in old[key].keys() | new[key].keys() if old[key].get(f) != new[key].get(f))
            examples[key] = {f: {"before": old[key].get(f), "after": new[key].get(f)} for f in fields}
        result[name] = {"changed": len(changed), "only_before": len(only_before), "only_after": len(only_after),
                        "examples": examples, "only_before_ids": only_before[:limit],
                        "only_after_ids": only_after[:limit]}
    return result
