"""A TCP relay in front of a real server, which a test can cut and restore: an outage of one process's dependency
that leaves the shared server itself (and every other test using it) alone."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any

from aiokafka.protocol import coordination, metadata


class TcpProxy:
    """Relays 127.0.0.1:<port> to target; cut() closes every relayed connection and stops listening (the
    address then refuses connections), restore() listens on the same port again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    restore = open

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def close(self) -> None:
        if self._server is not None:
            await self.cut()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        pair = {client_writer, upstream_writer}
        self._writers |= pair
        try:
            await self._both_ways(client_reader, client_writer, upstream_reader, upstream_writer)
        finally:
            self._writers -= pair
            for writer in pair:
                writer.close()

    async def _both_ways(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                         upstream_reader: asyncio.StreamReader, upstream_writer: asyncio.StreamWriter) -> None:
        await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


# Kafka API keys whose responses carry broker addresses (aiokafka sends versions without tagged fields).
METADATA, FIND_COORDINATOR = 3, 10


class KafkaRelay(TcpProxy):
    """A relay to a single-node Kafka broker that also stands in for the broker's advertised address.

    A client learns brokers' addresses from Metadata and FindCoordinator responses and then connects to them
    directly; this relay rewrites those addresses to its own, so that everything a client sends goes through it
    and cut() is an outage of the broker for that client alone.
    """

    async def _both_ways(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                         upstream_reader: asyncio.StreamReader, upstream_writer: asyncio.StreamWriter) -> None:
        asked: dict[int, tuple[int, int]] = {}  # correlation id -> (api key, api version)

        async def requests() -> None:
            with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
                while True:
                    frame = await _frame(client_reader)
                    api_key, api_version, correlation_id = struct.unpack(">hhi", frame[4:12])
                    asked[correlation_id] = (api_key, api_version)
                    upstream_writer.write(frame)
                    await upstream_writer.drain()
            upstream_writer.close()

        async def responses() -> None:
            with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
                while True:
                    frame = await _frame(upstream_reader)
                    (correlation_id,) = struct.unpack(">i", frame[4:8])
                    api_key, api_version = asked.pop(correlation_id, (-1, -1))
                    if api_key in (METADATA, FIND_COORDINATOR):
                        body = self._readdress(api_key, api_version, frame[8:])
                        frame = struct.pack(">ii", 4 + len(body), correlation_id) + body
                    client_writer.write(frame)
                    await client_writer.drain()
            client_writer.close()

        await asyncio.gather(requests(), responses())

    def _readdress(self, api_key: int, api_version: int, body: bytes) -> bytes:
        if api_key == METADATA:
            response: Any = getattr(metadata, f"MetadataResponse_v{api_version}").decode(body)
            response.brokers = [(b[0], "127.0.0.1", self.port, *b[3:]) for b in response.brokers]
        else:
            response = getattr(coordination, f"FindCoordinatorResponse_v{api_version}").decode(body)
            response.host, response.port = "127.0.0.1", self.port
        return response.encode()


async def _frame(reader: asyncio.StreamReader) -> bytes:
    """One Kafka protocol frame: its 4-byte length and what follows."""
    size = await reader.readexactly(4)
    return size + await reader.readexactly(struct.unpack(">i", size)[0])
