"""Bulk writes go to the server in small commands, in order, and nothing else in the code bypasses that."""

import re
from pathlib import Path

from labelmesh.runtime import mongo
from labelmesh.runtime.mongo import MAX_STATEMENTS_PER_COMMAND, bulk_write

ROOT = Path(__file__).resolve().parents[3]


class RecordingCollection:
    def __init__(self) -> None:
        self.calls: list[tuple[list[int], bool]] = []

    async def bulk_write(self, ops, ordered):  # noqa: ANN001 - stands in for AsyncCollection.bulk_write
        self.calls.append((ops, ordered))


async def test_ops_are_sent_in_order_in_commands_below_the_limit():
    collection = RecordingCollection()
    ops = list(range(3 * MAX_STATEMENTS_PER_COMMAND + 5))
    await bulk_write(collection, ops, ordered=False)  # type: ignore[arg-type]
    assert [len(chunk) for chunk, _ in collection.calls] == [MAX_STATEMENTS_PER_COMMAND] * 3 + [5]
    assert [op for chunk, _ in collection.calls for op in chunk] == ops
    assert all(ordered is False for _, ordered in collection.calls)


async def test_no_ops_sends_no_command():
    collection = RecordingCollection()
    await bulk_write(collection, [])  # type: ignore[arg-type]
    assert collection.calls == []


def test_limit_stays_far_below_ferretdbs_pool_of_100():
    assert 1 <= MAX_STATEMENTS_PER_COMMAND <= 25


def test_no_code_calls_collection_bulk_write_directly():
    """A direct bulk_write of 100+ updates wedges FerretDB 1.24's connection pool: go through the helper."""
    helper = Path(mongo.__file__).resolve()
    offenders = []
    for folder in ("labelmesh", "services", "schemas", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.resolve() == helper:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"\.bulk_write\(", line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert offenders == []


class FailingInserts:
    def __init__(self, codes: list[int]) -> None:
        self.codes = codes

    async def insert_many(self, docs, ordered):  # noqa: ANN001 - stands in for AsyncCollection.insert_many
        from pymongo.errors import BulkWriteError

        raise BulkWriteError({"writeErrors": [{"index": i, "code": c, "errmsg": "x"} for i, c in enumerate(self.codes)]})


async def test_insert_new_reports_duplicates_but_raises_any_other_write_error():
    import pytest
    from pymongo.errors import BulkWriteError

    from labelmesh.runtime.mongo import DUPLICATE_KEY, insert_new

    assert await insert_new(FailingInserts([DUPLICATE_KEY, DUPLICATE_KEY]), [{"_id": 1}, {"_id": 2}]) == [0, 1]  # type: ignore[arg-type]
    with pytest.raises(BulkWriteError):
        await insert_new(FailingInserts([DUPLICATE_KEY, 121]), [{"_id": 1}, {"_id": 2}])  # type: ignore[arg-type]
