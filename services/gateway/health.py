"""The gateway's gRPC health status, kept equal to the process's readiness (broker and database both answer)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from grpc_health.v1 import health, health_pb2

log = logging.getLogger(__name__)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ReadinessHealth:
    """grpc_health's servicer, whose every service name is SERVING only while `ready()` says so.

    A gRPC load balancer or client that checks health must stop sending work to a gateway that cannot reach
    Kafka or MongoDB, as Kubernetes does with /ready; the gateway itself stays up and turns SERVING again when
    they are back.
    """

    def __init__(self, ready: Callable[[], Awaitable[bool]], names: Iterable[str], interval_s: float) -> None:
        self.servicer = health.aio.HealthServicer()
        self._ready = ready
        self._names = ("", *names)
        self._interval_s = interval_s
        self._watcher: asyncio.Task[None] | None = None
        self.serving: bool | None = None

    async def hold(self) -> None:
        """NOT_SERVING under every name, before the first check (a name never set would answer NOT_FOUND)."""
        for name in self._names:
            await self.servicer.set(name, NOT_SERVING)

    async def start(self) -> None:
        """Check once (so the status is right when this returns), then keep checking every interval."""
        await self.check()
        self._watcher = asyncio.create_task(self._watch(), name="gateway.health")

    async def check(self) -> bool:
        ready = await self._ready()
        if ready != self.serving:
            if self.serving is not None:
                log.warning("gRPC health now %s", "SERVING" if ready else "NOT_SERVING (broker or database gone)")
            for name in self._names:
                await self.servicer.set(name, SERVING if ready else NOT_SERVING)
            self.serving = ready
        return ready

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - the watcher must outlive any one failed check
                log.exception("readiness check failed; retrying")

    async def stop(self) -> None:
        """NOT_SERVING for good (grpc_health ignores later changes), before the server drains its calls."""
        if self._watcher:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self.servicer.enter_graceful_shutdown()
