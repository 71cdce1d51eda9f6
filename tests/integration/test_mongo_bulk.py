"""Against the real FerretDB: a bulk write far larger than its connection pool completes and stores everything."""

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient, UpdateOne

from labelmesh.runtime.mongo import bulk_write, find_by_ids, insert_new, upsert_many
from labelmesh.runtime.settings import CommonSettings

pytestmark = pytest.mark.integration


async def test_three_hundred_upserts_in_one_call_complete(env):
    settings = env.settings(CommonSettings)
    client = AsyncMongoClient(settings.mongo_uri, serverSelectionTimeoutMS=5000)
    try:
        collection = client[settings.database_name("bulk")]["docs"]
        ops = [UpdateOne({"_id": f"d{i}"}, {"$set": {"n": i}}, upsert=True) for i in range(300)]
        await bulk_write(collection, ops, ordered=False)
        await bulk_write(collection, ops[:150], ordered=True)  # again: upserts of existing documents
        assert await collection.count_documents({}) == 300
        assert sorted([d["n"] async for d in collection.find({}, {"n": 1})]) == list(range(300))
    finally:
        await client.close()


async def test_upsert_many_inserts_new_documents_and_replaces_or_merges_existing_ones(env):
    settings = env.settings(CommonSettings)
    client = AsyncMongoClient(settings.mongo_uri, serverSelectionTimeoutMS=5000)
    try:
        collection = client[settings.database_name("bulk")]["upserts"]
        await upsert_many(collection, [{"_id": f"d{i}", "n": i, "keep": True} for i in range(200)])
        assert await collection.count_documents({}) == 200
        # Replace: an existing document becomes exactly the new one; new ids are inserted beside it.
        await upsert_many(collection, [{"_id": "d1", "n": -1}, {"_id": "new", "n": 1000}])
        assert await collection.find_one({"_id": "d1"}) == {"_id": "d1", "n": -1}
        assert await collection.find_one({"_id": "new"}) == {"_id": "new", "n": 1000}
        # Merge: fields the stored document has and the new one lacks stay, like $set with upsert.
        await upsert_many(collection, [{"_id": "d2", "n": -2}, {"_id": "merged-new", "n": 7}], merge=True)
        assert await collection.find_one({"_id": "d2"}) == {"_id": "d2", "n": -2, "keep": True}
        assert await collection.find_one({"_id": "merged-new"}) == {"_id": "merged-new", "n": 7}
        assert await collection.count_documents({}) == 202
    finally:
        await client.close()


async def test_insert_new_keeps_existing_documents_and_says_which_they_were(env):
    settings = env.settings(CommonSettings)
    client = AsyncMongoClient(settings.mongo_uri, serverSelectionTimeoutMS=5000)
    try:
        collection = client[settings.database_name("bulk")]["inbox"]
        assert await insert_new(collection, [{"_id": "a", "v": 1}, {"_id": "b", "v": 1}]) == []
        assert await insert_new(collection, [{"_id": "c", "v": 2}, {"_id": "a", "v": 2}, {"_id": "b", "v": 2}]) == [1, 2]
        assert {d["_id"]: d["v"] async for d in collection.find({})} == {"a": 1, "b": 1, "c": 2}
        assert await insert_new(collection, []) == []
    finally:
        await client.close()


async def test_find_by_ids_returns_the_stored_documents_once_and_skips_missing_ids(env):
    settings = env.settings(CommonSettings)
    client = AsyncMongoClient(settings.mongo_uri, serverSelectionTimeoutMS=5000)
    try:
        collection = client[settings.database_name("bulk")]["lookups"]
        await insert_new(collection, [{"_id": f"k{i}", "n": i, "big": "x" * 100} for i in range(30)])
        wanted = ["k3", "nope", "k17", "k3", *[f"k{i}" for i in range(20, 30)]]
        found = await find_by_ids(collection, wanted, {"n": 1})
        assert sorted(d["_id"] for d in found) == sorted({"k3", "k17", *[f"k{i}" for i in range(20, 30)]})
        assert all(set(d) == {"_id", "n"} and d["n"] == int(d["_id"][1:]) for d in found)
        assert await find_by_ids(collection, []) == []
    finally:
        await client.close()


async def test_id_in_queries_find_update_and_delete_exactly_the_listed_documents(env):
    """The patched FerretDB reads an `$in` of string or ObjectID `_id`s through the index (up to 1,000 of them);
    longer or mixed lists take the full scan. Every path must answer as MongoDB does, and find_by_ids must
    keep the order it was asked in across its queries of IDS_PER_QUERY ids."""
    settings = env.settings(CommonSettings)
    client = AsyncMongoClient(settings.mongo_uri, serverSelectionTimeoutMS=5000)
    try:
        collection = client[settings.database_name("bulk")]["in_lookups"]
        oid = ObjectId()
        await insert_new(collection, [{"_id": f"k{i}", "n": i} for i in range(1_500)] + [{"_id": oid, "n": -1},
                                                                                          {"_id": 7, "n": 7}])
        pushed = ["k5", "k1499", "missing", oid]
        assert sorted([d["n"] async for d in collection.find({"_id": {"$in": pushed}})]) == [-1, 5, 1499]
        scanned = [f"k{i}" for i in range(1_100)] + [7]  # too long, and not only strings: no pushdown
        assert await collection.count_documents({"_id": {"$in": scanned}}) == 1_101
        wanted = [f"k{i}" for i in range(1_199, -1, -1)]  # three queries of IDS_PER_QUERY, asked in reverse
        assert [d["n"] for d in await find_by_ids(collection, wanted)] == list(range(1_199, -1, -1))
        assert (await collection.update_many({"_id": {"$in": ["k1", "k2", oid]}}, {"$set": {"seen": True}})
                ).modified_count == 3
        assert (await collection.delete_many({"_id": {"$in": ["k1", "k3", "nope"]}})).deleted_count == 2
        assert await collection.count_documents({"seen": True}) == 2 and await collection.count_documents({}) == 1_500
    finally:
        await client.close()
