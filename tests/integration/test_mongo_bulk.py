"""Against the real FerretDB: a bulk write far larger than its connection pool completes and stores everything."""

import pytest
from pymongo import AsyncMongoClient, UpdateOne

from labelmesh.runtime.mongo import bulk_write
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
