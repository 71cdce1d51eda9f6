"""One service process: its bus, its own database, its HTTP /metrics, /health and /ready, and its lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import uvicorn
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.types import Scope
from prometheus_client import CollectorRegistry, make_asgi_app
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.bus import EventBus
from labelmesh.runtime.inbox import Inbox
from labelmesh.runtime.mongo_metrics import CommandTimer
from labelmesh.runtime.settings import CommonSettings

log = logging.getLogger(__name__)
Hook = Callable[[], Awaitable[None]]


@dataclass
class ServiceRuntime:
    """Everything a service's handlers need, created in one place (the service's app factory)."""

    service: str
    settings: CommonSettings
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    on_start: list[Hook] = field(default_factory=list)
    # Run once the broker is connected: hooks that publish.
    on_started: list[Hook] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)
    # Run with the inbox's prune, given its cutoff: a service's own duplicate guards kept as long as the inbox's.
    on_prune: list[Callable[[datetime], Awaitable[int]]] = field(default_factory=list)
    # The service object the factory wired, for tests and tools that inspect it.
    component: object | None = None

    def __post_init__(self) -> None:
        self.bus = EventBus(self.settings, self.service, self.registry)
        self.mongo: AsyncMongoClient = AsyncMongoClient(
            self.settings.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=10_000, appname=self.service,
            socketTimeoutMS=int(self.settings.mongo_socket_timeout_s * 1000),
            event_listeners=[CommandTimer(self.registry, self.service)],
        )
        self.db: AsyncDatabase = self.mongo[self.settings.database_name(self.service)]
        self.bus.inbox = Inbox(self.db, self.settings.inbox_retention_s)
        self._started = False
        self._pruner: asyncio.Task[None] | None = None
        # Built before any subscriber: the ASGI app installs its own context repository on the broker, and
        # subscribers registered earlier would then look for their message in the wrong one.
        self.asgi = self.http_app()

    async def start(self) -> None:
        await self.mongo.admin.command("ping")
        await self.bus.inbox.ensure_indexes()
        self._pruner = asyncio.create_task(self._prune_inbox())
        for hook in self.on_start:
            await hook()
        await self.bus.broker.start()
        self._started = True
        for hook in self.on_started:
            await hook()
        log.info("%s started", self.service)

    async def stop(self) -> None:
        if self._pruner:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None
        if self._started:
            await self.bus.broker.stop()
        for hook in reversed(self.on_stop):
            await hook()
        await self.mongo.close()
        self._started = False
        log.info("%s stopped", self.service)

    async def _prune_inbox(self) -> None:
        """Every inbox_prune_every_s, the inbox forgets what is past its retention window (Inbox.prune)."""
        assert self.bus.inbox is not None
        while True:
            try:
                applied, stale = await self.bus.inbox.prune()
                others = [await hook(self.bus.inbox.cutoff()) for hook in self.on_prune]
                if applied or stale or any(others):
                    log.info("pruned past the retention window: %d applied event ids, %d stale in-flight records, "
                             "%d other records", applied, stale, sum(others))
            except Exception:  # noqa: BLE001 - pruning is housekeeping; the next round tries again
                log.exception("inbox prune failed; retrying")
            await asyncio.sleep(self.settings.inbox_prune_every_s)

    async def ready(self) -> bool:
        """Whether this process can do its work now: MongoDB and the broker both answer (3 s each)."""
        try:
            await asyncio.wait_for(self.mongo.admin.command("ping"), 3)
        except Exception:  # noqa: BLE001 - any failure means not ready
            return False
        return await self.bus.reachable(3)

    def http_app(self) -> AsgiFastStream:
        """Prometheus /metrics, liveness /health, readiness /ready (broker and database).

        /health asks nothing of Kafka or MongoDB: it answers while the event loop runs. An outage of either makes
        every pod unready (taken out of the Service) but restarts none, and each reconnects when it is back."""

        @get
        async def health(scope: Scope) -> AsgiResponse:  # noqa: ARG001
            return AsgiResponse(b"alive", 200)

        @get
        async def ready(scope: Scope) -> AsgiResponse:  # noqa: ARG001
            return AsgiResponse(b"ready", 200) if await self.ready() else AsgiResponse(b"not ready", 503)

        return AsgiFastStream(
            self.bus.broker,
            asgi_routes=[
                ("/metrics", make_asgi_app(self.registry)),
                ("/health", health),
                ("/ready", ready),
            ],
            asyncapi_path="/asyncapi",
        )

    async def serve(self) -> None:
        """Run until SIGTERM/SIGINT: start, serve HTTP, then stop gracefully and exit 0."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
        await self.start()
        # uvicorn's own serve() re-raises the signal after shutdown, which would skip our graceful stop.
        config = uvicorn.Config(self.asgi, host=self.settings.http_host, port=self.settings.http_port,
                                lifespan="off", log_level="warning", access_log=False)
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        try:
            await server.startup()
            await stop.wait()
            server.should_exit = True
            await server.shutdown()
        finally:
            await self.stop()


def _await_chain(task: asyncio.Task[object]) -> list[str]:
    """The coroutines a task is suspended in, outermost first: Task.get_stack shows only the outermost frame."""
    lines, awaited = [], task.get_coro()
    while awaited is not None and len(lines) < 40:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None) \
            or getattr(awaited, "gi_frame", None)
        if frame is None:
            lines.append(f"  awaiting {awaited!r}"[:300])
            break
        lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None) \
            or getattr(awaited, "gi_yieldfrom", None)
    return lines


def dump_tasks() -> None:
    """On SIGUSR1: log where every asyncio task is waiting, down the chain of awaits (py-spy shows threads,
    not coroutines)."""
    for task in asyncio.all_tasks():
        log.warning("task %s:\n%s", task.get_name(), "\n".join(_await_chain(task)))
