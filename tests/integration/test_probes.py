"""Liveness, readiness and gRPC health of a real gateway when its database or broker goes away and comes back.

The outage is a relay in front of the shared FerretDB or Kafka that the test cuts (tests/tcp_proxy.py): the
shared servers keep running for everyone else.
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
from tests.tcp_proxy import KafkaRelay, TcpProxy

pytestmark = pytest.mark.integration
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(params=["database", "broker"])
async def outage(request, env) -> AsyncIterator[tuple[TcpProxy, dict[str, str]]]:  # type: ignore[no-untyped-def]
    """A relay to the shared FerretDB or Kafka, and the settings that reach it through the relay."""
    if request.param == "database":
        uri = urlsplit(env.mongo_uri)
        proxy = await TcpProxy(uri.hostname or "127.0.0.1", uri.port or 27017).open()
        settings = {"mongo_uri": urlunsplit(uri._replace(netloc=f"127.0.0.1:{proxy.port}"))}
    else:
        host, _, port = env.bootstrap.rpartition(":")
        proxy = await KafkaRelay(host, int(port)).open()
        settings = {"kafka_bootstrap": f"127.0.0.1:{proxy.port}"}
    try:
        yield proxy, settings
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


async def test_an_outage_makes_the_gateway_unready_and_not_serving_but_keeps_it_alive(
        outage, start_gateway, serve_http) -> None:  # type: ignore[no-untyped-def]
    """The database or the broker stops answering this gateway (its relay is cut), then answers again."""
    relay, settings = outage
    runtime = await start_gateway(**settings, health_check_s=0.1)
    http = await serve_http(runtime)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{runtime.component.port}")
    health = health_pb2_grpc.HealthStub(channel)
    try:
        assert _passes(await http.get("/health"))
        assert _passes(await http.get("/ready"))
        for name in ("", *SERVICE_NAMES):
            assert (await health.Check(health_pb2.HealthCheckRequest(service=name))).status == SERVING, name
        watch = health.Watch(health_pb2.HealthCheckRequest(service="labelmesh.v1.AnnotationService"))

        await relay.cut()
        # Liveness asks nothing of the database or the broker: the pod would not be restarted.
        assert _passes(await http.get("/health"))
        ready = await http.get("/ready")
        assert ready.status_code == 503 and ready.text == "not ready"
        await asyncio.wait_for(_next_status(watch, NOT_SERVING), 30)
        for name in ("", *SERVICE_NAMES):
            assert (await health.Check(health_pb2.HealthCheckRequest(service=name))).status == NOT_SERVING, name
        assert _passes(await http.get("/health"))

        await relay.restore()
        await asyncio.wait_for(_next_status(watch, SERVING), 60)
        await eventually(lambda: _status_is(http, "/ready", 200), timeout=60)
        watch.cancel()
    finally:
        await channel.close()


async def _status_is(http: httpx.AsyncClient, path: str, code: int) -> bool:
    return (await http.get(path)).status_code == code


def _passes(response: httpx.Response) -> bool:
    """Whether a Kubernetes httpGet probe counts this answer as a success."""
    return 200 <= response.status_code < 400


async def test_liveness_asks_nothing_of_the_broker(env, serve_http) -> None:  # type: ignore[no-untyped-def]
    """A runtime whose broker address refuses connections: alive (not restarted), never ready."""
    runtime = create_app(env.settings(GatewaySettings, kafka_bootstrap=f"127.0.0.1:{free_port()}", admin_token=ADMIN))
    http = await serve_http(runtime)
    try:
        assert _passes(await http.get("/health"))
        assert (await http.get("/ready")).status_code == 503
    finally:
        await runtime.mongo.close()
