"""MongoDB helpers for the MongoDB-wire server we run on locally and in CI: FerretDB 1.24 on SQLite."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

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
