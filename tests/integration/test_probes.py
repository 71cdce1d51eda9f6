"""Liveness, readiness and gRPC health of a real gateway when its database goes away and comes back.

The outage is a relay in front of the shared FerretDB that the test cuts (tests/tcp_proxy.py): the shared
server keeps running for everyone else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import grpc
import httpx
import pytest
import uvicorn
from grpc_health.v1 import health_pb2, health_pb2_grpc

from labelmesh.runtime.service import ServiceRuntime
from services.gateway.app import SERVICE_NAMES, create_app
from services.gateway.settings import GatewaySettings
from tests.conftest import eventually
from tests.gateway_helpers import ADMIN, free_port
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
async def mongo_relay(env) -> AsyncIterator[tuple[TcpProxy, str]]:  # type: ignore[no-untyped-def]
    """A relay to the shared FerretDB, and the MongoDB URI that reaches FerretDB through it."""
    uri = urlsplit(env.mongo_uri)
    proxy = await TcpProxy(uri.hostname or "127.0.0.1", uri.port or 27017).open()
    try:
        yield proxy, urlunsplit(uri._replace(netloc=f"127.0.0.1:{proxy.port}"))
    finally:
        await proxy.close()


@pytest.fixture
async def serve_http() -> AsyncIterator[Callable[[ServiceRuntime], Awaitable[httpx.AsyncClient]]]:
    """Serves a runtime's HTTP app (/health, /ready) on a real socket, as `labelmesh run` does."""
    servers: list[uvicorn.Server] = []
    clients: list[httpx.AsyncClient] = []

    async def serve(runtime: ServiceRuntime) -> httpx.AsyncClient:
        config = uvicorn.Config(runtime.asgi, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup()
        servers.append(server)
        port = server.servers[0].sockets[0].getsockname()[1]
        clients.append(httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30))
        return clients[-1]

    try:
        yield serve
    finally:
        for client in clients:
            await client.aclose()
        for server in servers:
            server.should_exit = True
            await server.shutdown()


async def _next_status(stream, wanted: int) -> None:  # type: ignore[no-untyped-def]
    """Read a health Watch stream until it reports `wanted`."""
    async for response in stream:
        if response.status == wanted:
            return


async def test_a_database_outage_makes_the_gateway_unready_and_not_serving_but_keeps_it_alive(
        start_gateway, mongo_relay, serve_http) -> None:  # type: ignore[no-untyped-def]
    relay, uri = mongo_relay
    runtime = await start_gateway(mongo_uri=uri, health_check_s=0.1)
    http = await serve_http(runtime)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{runtime.component.port}")
    health = health_pb2_grpc.HealthStub(channel)
    try:
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/ready")).status_code == 200
        for name in ("", *SERVICE_NAMES):
            assert (await health.Check(health_pb2.HealthCheckRequest(service=name))).status == SERVING, name
        watch = health.Watch(health_pb2.HealthCheckRequest(service="labelmesh.v1.AnnotationService"))

        await relay.cut()
        # Liveness asks nothing of the database: the pod would not be restarted.
        assert (await http.get("/health")).status_code == 200
        ready = await http.get("/ready")
        assert ready.status_code == 503 and ready.text == "not ready"
        await asyncio.wait_for(_next_status(watch, NOT_SERVING), 30)
        for name in ("", *SERVICE_NAMES):
            assert (await health.Check(health_pb2.HealthCheckRequest(service=name))).status == NOT_SERVING, name
        assert (await http.get("/health")).status_code == 200

        await relay.restore()
        await asyncio.wait_for(_next_status(watch, SERVING), 60)
        await eventually(lambda: _status_is(http, "/ready", 200), timeout=60)
        watch.cancel()
    finally:
        await channel.close()


async def _status_is(http: httpx.AsyncClient, path: str, code: int) -> bool:
    return (await http.get(path)).status_code == code


async def test_liveness_asks_nothing_of_the_broker(env, serve_http) -> None:  # type: ignore[no-untyped-def]
    """A runtime whose broker address refuses connections: alive (not restarted), never ready."""
    runtime = create_app(env.settings(GatewaySettings, kafka_bootstrap=f"127.0.0.1:{free_port()}", admin_token=ADMIN))
    http = await serve_http(runtime)
    try:
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/ready")).status_code == 503
    finally:
        await runtime.mongo.close()
