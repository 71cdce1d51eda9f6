"""The consumer inbox against the real FerretDB: which events of a batch are handled, skipped or recovering."""

from datetime import datetime, timedelta, timezone

import pytest
from pymongo import AsyncMongoClient

from labelmesh.runtime.inbox import Inbox
from labelmesh.runtime.settings import CommonSettings
from schemas.events import QcFlagged

pytestmark = pytest.mark.integration


def flag(n: int) -> QcFlagged:
    return QcFlagged(producer="test", project="p", subject="item", subject_id=f"i{n}", kind="disagreement",
                     message="m", event_id=f"e{n}")


async def test_a_finished_event_is_skipped_an_interrupted_one_recovers_and_a_released_one_comes_back(env):
    settings = env.settings(CommonSettings)
    client = AsyncMongoClient(settings.mongo_uri, serverSelectionTimeoutMS=5000)
    try:
        inbox = Inbox(client[settings.database_name("inbox")])
        # A fresh batch, with one event delivered twice in it: each id is handled once, nothing recovering.
        claim = await inbox.begin([flag(1), flag(2), flag(1)])
        assert [e.event_id for e in claim.todo] == ["e1", "e2"] and claim.recovering == frozenset()
        assert not await inbox.handled("e1"), "claimed but still in flight"
        await inbox.end(claim)
        assert await inbox.handled("e1") and await inbox.handled("e2")

        # Redelivered after the batch finished: skipped. e3 is new.
        claim = await inbox.begin([flag(1), flag(3)])
        assert [e.event_id for e in claim.todo] == ["e3"] and claim.recovering == frozenset()
        assert await inbox.in_flight("e3") and not await inbox.in_flight("e1"), "only the new event is in flight"
        # ...and this attempt dies before its end(): the same batch again is handled, e3 as recovering.
        claim = await inbox.begin([flag(1), flag(3)])
        assert [e.event_id for e in claim.todo] == ["e3"] and claim.recovering == frozenset({"e3"})
        await inbox.end(claim)
        assert await inbox.handled("e3"), "the recovered attempt's record no longer holds e3"

        # An interrupted batch recovered in parts: its record keeps the ids not yet handled again.
        await inbox.begin([flag(5), flag(6)])  # dies
        claim = await inbox.begin([flag(5)])
        assert claim.recovering == frozenset({"e5"})
        await inbox.end(claim)
        assert await inbox.handled("e5") and not await inbox.handled("e6")
        claim = await inbox.begin([flag(6)])
        assert claim.recovering == frozenset({"e6"})
        await inbox.end(claim)
        assert await inbox.handled("e6")

        # A dead-lettered event is released, so a re-drive of it is accepted again.
        claim = await inbox.begin([flag(4)])
        await inbox.release(claim.todo)
        await inbox.end(claim)
        assert not await inbox.handled("e4")
        claim = await inbox.begin([flag(4)])
        assert [e.event_id for e in claim.todo] == ["e4"] and claim.recovering == frozenset()
        await inbox.end(claim)
        assert await inbox.inflight.count_documents({}) == 0
    finally:
        await client.close()


async def test_the_inbox_forgets_what_is_past_its_retention_window(env):
    settings = env.settings(CommonSettings)
    client = AsyncMongoClient(settings.mongo_uri, serverSelectionTimeoutMS=5000, tz_aware=True)
    now = [datetime(2026, 1, 1, tzinfo=timezone.utc)]
    try:
        inbox = Inbox(client[settings.database_name("inbox")], retention_s=3600, clock=lambda: now[0])
        await inbox.ensure_indexes()
        assert any(spec["key"] == [("ids", 1)] for spec in (await inbox.inflight.index_information()).values()), \
            "the in-flight records are found by event id, not read whole at every batch"
        await inbox.end(await inbox.begin([flag(1), flag(2)]))
        await inbox.begin([flag(3)])  # an attempt that dies: its in-flight record stays
        now[0] += timedelta(minutes=30)
        await inbox.end(await inbox.begin([flag(4)]))
        assert await inbox.prune() == (0, 0), "nothing is past the window yet"

        now[0] += timedelta(minutes=45)
        assert await inbox.prune() == (3, 1), "e1..e3 and the dead attempt's record are past it, e4 is not"
        assert not await inbox.handled("e1") and await inbox.handled("e4")
        assert await inbox.inflight.count_documents({}) == 0
        claim = await inbox.begin([flag(3), flag(4)])
        assert [e.event_id for e in claim.todo] == ["e3"] and claim.recovering == frozenset()
    finally:
        await client.drop_database(settings.database_name("inbox"))
        await client.close()


async def test_a_service_prunes_its_inbox_and_its_own_duplicate_guards_past_the_window(env):
    from services.qc.app import create_app
    from services.qc.settings import QcSettings
    from tests.conftest import eventually

    runtime = create_app(env.settings(QcSettings, inbox_retention_s=3600))
    old, recent = datetime.now(timezone.utc) - timedelta(hours=2), datetime.now(timezone.utc)
    await runtime.db["processed_events"].insert_many([{"_id": "old", "at": old}, {"_id": "recent", "at": recent}])
    await runtime.db["evidence"].insert_many([{"_id": "old", "key": "p/a", "at": old},
                                              {"_id": "recent", "key": "p/a", "at": recent}])
    await runtime.start()  # its first prune runs at start
    try:
        async def pruned() -> bool:
            ids = [[d["_id"] async for d in runtime.db[c].find({})] for c in ("processed_events", "evidence")]
            return ids == [["recent"], ["recent"]]

        await eventually(pruned)
    finally:
        await runtime.stop()
