"""MongoDB helpers for the MongoDB-wire server we run on locally and in CI: FerretDB 1.24 on SQLite."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pymongo import ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

# FerretDB 1.24 answers an `update` command by opening one SQLite query per update statement and closes
# them only when the whole command returns (internal/handler/msg_update.go: `defer closer.Close()` inside
# the loop). Each open query holds a connection from that database's pool of 100, and the statement's
# own write needs one more, so a bulk write of ~100 updates (or a few large ones at once) waits for a
# connection forever and the database stays wedged until FerretDB restarts. Found with a goroutine dump
# of a stalled demo: three update commands holding 100 open queries each. Small chunks keep every command
# far below the pool, even with several handlers and the inbox writing to one database at the same time.
MAX_STATEMENTS_PER_COMMAND = 16


async def bulk_write(collection: AsyncCollection, ops: Sequence[Any], *, ordered: bool = True) -> None:
    """collection.bulk_write in commands of at most MAX_STATEMENTS_PER_COMMAND statements, in order.

    Each chunk is atomic per statement as before; with ordered=True a failing chunk stops the rest,
    like an ordered bulk write stops at its first error.
    """
    for start in range(0, len(ops), MAX_STATEMENTS_PER_COMMAND):
        await collection.bulk_write(list(ops[start : start + MAX_STATEMENTS_PER_COMMAND]), ordered=ordered)


# FerretDB 1.24's `insert` command writes its documents in batches (one SQLite transaction each, nothing
# held open per document; internal/handler/msg_insert.go), so unlike `update` it is safe with any count.
# Inserting first and updating only the documents that already existed turns a batch of N upserts from
# N/16 round trips into one; redeliveries and replays, the only source of existing ids, take the old path.
DUPLICATE_KEY = 11000


async def insert_new(collection: AsyncCollection, docs: Sequence[dict[str, Any]]) -> list[int]:
    """Insert documents (each with its `_id`) in one unordered command; existing ids are left untouched.

    Returns the indexes of the documents whose `_id` already existed. Any other write error raises.
    """
    if not docs:
        return []
    try:
        await collection.insert_many(list(docs), ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if not errors or any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return sorted(e["index"] for e in errors)
    return []


async def upsert_many(collection: AsyncCollection, docs: Sequence[dict[str, Any]], *, merge: bool = False) -> list[int]:
    """Per document, what ReplaceOne(upsert=True) does, or UpdateOne($set, upsert=True) with merge=True
    (fields the stored document has and `doc` lacks are kept): new ids in one insert command, existing
    ones through bulk_write in small update commands. Returns the indexes of the documents that existed."""
    existing = await insert_new(collection, docs)
    if not existing:
        return existing
    ops = []
    for index in existing:
        doc = docs[index]
        body = {k: v for k, v in doc.items() if k != "_id"}
        ops.append(UpdateOne({"_id": doc["_id"]}, {"$set": body}, upsert=True) if merge
                   else ReplaceOne({"_id": doc["_id"]}, body, upsert=True))
    await bulk_write(collection, ops, ordered=False)
    return existing


# Stock FerretDB 1.24 hands only `_id` *equality* down to SQLite: `{"_id": {"$in": ids}}` read and decoded
# every document of the collection (0.37 s for one id among qc's 715 items, growing with the collection),
# so batches were looked up one `_id` at a time: a command, a round trip and a socket write each, 14% of
# qc's CPU in a MiniLM burst (py-spy). The FerretDB we build (deploy/local/ferretdb.sh, patch_id_in) answers
# an `$in` of up to 1,000 string or ObjectID `_id`s through the index: 100 of 30,000 documents in 6 ms,
# against 826 ms for the same `$in` it cannot push down. MongoDB does this natively.
IDS_PER_QUERY = 500


async def find_by_ids(collection: AsyncCollection, ids: Sequence[Any],
                      projection: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The documents with these `_id`s, in the order of `ids` (missing ones left out), by `$in` queries."""
    unique = list(dict.fromkeys(ids))
    by_id: dict[Any, dict[str, Any]] = {}
    for start in range(0, len(unique), IDS_PER_QUERY):
        async for doc in collection.find({"_id": {"$in": unique[start:start + IDS_PER_QUERY]}}, projection):
            by_id[doc["_id"]] = doc
    return [by_id[i] for i in unique if i in by_id]


async def insert_one_new(collection: AsyncCollection, doc: dict[str, Any]) -> bool:
    """Insert the document; False when its `_id` exists. A unique `_id` is the one write that FerretDB 1.24 on
    SQLite makes atomic across processes (a primary key), so claims are decided by it (services/gateway/queue.py)."""
    try:
        await collection.insert_one(doc)
    except DuplicateKeyError:
        return False
    return True


# FerretDB 1.24 hands `_id` equality down to SQLite only when it is the whole filter: `{"_id": x, "state":
# "leased"}` read documents until it met x, in a find as in an update or delete (under the lease bench's load,
# 40-55 ms for such a find against 14 ms for `{"_id": x}`; 15 ms for a delete of an early document of 5,000;
# measured 2026-12-05), so every conditional write on the lease path cost a scan that grew with the collection.
# The document is read by `_id` alone and the condition checked here, then the write goes by `_id` alone. On
# MongoDB this splits one atomic operation in two; the callers use it only for documents with one writer at a
# time (services/gateway/queue.py), where nothing can change in between but what that writer does itself.
Where = Callable[[dict[str, Any]], bool]


async def update_by_id(collection: AsyncCollection, _id: Any, update: dict[str, Any], where: Where | None = None) -> bool:
    """update_one({"_id": _id}, update) when the document exists and `where(document)` holds; True if it did."""
    if where is not None:
        doc = await collection.find_one({"_id": _id})
        if doc is None or not where(doc):
            return False
    return (await collection.update_one({"_id": _id}, update)).matched_count == 1


async def delete_by_id(collection: AsyncCollection, _id: Any, where: Where | None = None) -> bool:
    """delete_one({"_id": _id}) when the document exists and `where(document)` holds; True if it was deleted."""
    if where is not None:
        doc = await collection.find_one({"_id": _id})
        if doc is None or not where(doc):
            return False
    return (await collection.delete_one({"_id": _id})).deleted_count == 1


async def upsert_by_id(collection: AsyncCollection, _id: Any, update: dict[str, Any]) -> None:
    """update_one({"_id": _id}, update, upsert=True), also when another process inserts the same `_id` at once.

    Two upserts of a missing document race to insert it; MongoDB (4.2+) retries the loser as an update of the
    winner's document by itself, FerretDB 1.24 answers it with a duplicate-key error. The retry here is that
    server-side retry, so an atomic operator such as `$max` or `$inc` is applied once by each caller either way
    (tests/integration/test_trainer_versions.py's two trainers caught it)."""
    try:
        await collection.update_one({"_id": _id}, update, upsert=True)
    except DuplicateKeyError:
        await collection.update_one({"_id": _id}, update, upsert=True)


INDEX_OPTIONS_CONFLICT, INDEX_KEY_SPECS_CONFLICT = 85, 86
NOT_IMPLEMENTED = 238  # FerretDB 1.24's answer to an index option it lacks, such as expireAfterSeconds


async def ttl_index(collection: AsyncCollection, key: str, seconds: float) -> bool:
    """A TTL index on `key` where the server has them (MongoDB); False on FerretDB 1.24, which has none (its
    callers prune on a timer as well). An index with another expiry already there is left as it is."""
    try:
        await collection.create_index(key, expireAfterSeconds=int(seconds))
    except OperationFailure as exc:
        if exc.code == NOT_IMPLEMENTED:
            return False
        if exc.code in (INDEX_OPTIONS_CONFLICT, INDEX_KEY_SPECS_CONFLICT):
            return True
        raise
    return True
