"""`labelmesh export` resumes ExportFinalLabels from the last row's cursor when the stream breaks (UNAVAILABLE),
and gives up on any other error or after its retries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from labelmesh.admin_cli import final_labels
from schemas.rpc import gateway_pb2 as pb


def _broken(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="stream broke")


class Streams:
    """ExportFinalLabels answering each call from a script: rows, then optionally a broken stream."""

    def __init__(self, script: list[tuple[list[str], grpc.StatusCode | None]]) -> None:
        self.script = script
        self.cursors: list[str] = []

    def ExportFinalLabels(self, request: pb.ExportFinalLabelsRequest, metadata: Any) -> AsyncIterator[pb.FinalLabel]:
        self.cursors.append(request.cursor)
        rows, failure = self.script.pop(0)

        async def stream() -> AsyncIterator[pb.FinalLabel]:
            for cursor in rows:
                yield pb.FinalLabel(item_id=f"i{cursor}", cursor=cursor)
            if failure is not None:
                raise _broken(failure)
        return stream()


class Admin:
    def __init__(self, streams: Streams) -> None:
        self.projects, self.metadata = streams, ()


async def _export(streams: Streams, retries: int = 5) -> tuple[list[str], list[float]]:
    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    rows = [r.item_id async for r in final_labels(Admin(streams), "p", retries, pause)]  # type: ignore[arg-type]
    return rows, pauses


async def test_a_broken_stream_resumes_from_the_last_cursor() -> None:
    streams = Streams([(["1", "2"], grpc.StatusCode.UNAVAILABLE), ([], grpc.StatusCode.UNAVAILABLE), (["3"], None)])
    rows, pauses = await _export(streams)
    assert rows == ["i1", "i2", "i3"]
    assert streams.cursors == ["", "2", "2"] and pauses == [2, 4]


async def test_other_errors_and_too_many_breaks_are_raised() -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _export(Streams([(["1"], grpc.StatusCode.PERMISSION_DENIED)]))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError):
        await _export(Streams([([], grpc.StatusCode.UNAVAILABLE)] * 3), retries=2)
