"""What every gateway replica does in the background: sweep expired leases (and count open tasks), relay the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge

from labelmesh.runtime.pacing import after_failures, next_due
from services.gateway.api import Gateway
from services.gateway.relay import GatewayRelay

log = logging.getLogger(__name__)


class BackgroundJobs:
    def __init__(self, gw: Gateway, registry: CollectorRegistry) -> None:
        self.gw = gw
        self.settings = gw.settings
        self.relay = GatewayRelay(gw)
        self._tasks: list[asyncio.Task[None]] = []
        self.relayed = Counter("labelmesh_gateway_relayed_events_total",
                               "Events stored but not published, published by the outbox relay", registry=registry)
        self.open_tasks = Gauge("labelmesh_gateway_open_tasks", "Tasks waiting for humans", ["project", "tier"],
                                registry=registry)
        # How many open tasks this replica's index knows of: tests wait on it, operators see a replica lagging.
        Gauge("labelmesh_gateway_candidate_tasks", "Open tasks in this replica's in-memory index",
              registry=registry).set_function(lambda: len(gw.queue.hints))
        self.expired = Counter("labelmesh_gateway_leases_expired_total", "Leases that expired", registry=registry)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._sweep()), asyncio.create_task(self._relay())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _sweep(self) -> None:
        counts_due = 0.0
        while True:
            await asyncio.sleep(self.settings.sweep_seconds)
            try:
                self.expired.inc(await self.gw.queue.expire_leases())
                if time.monotonic() >= counts_due:
                    started = time.monotonic()
                    for (project, tier), n in (await self.gw.queue.open_counts()).items():
                        self.open_tasks.labels(project, tier).set(n)
                    # The count reads every task: with tens of thousands of tasks it took seconds of the
                    # database's time at every sweep. Spaced (labelmesh.runtime.pacing); the gauge is then a
                    # little older on a big queue.
                    counts_due = next_due(started)
            except Exception:  # noqa: BLE001 - the sweeper must outlive a database hiccup
                log.exception("lease sweep failed; retrying")

    async def _relay(self) -> None:
        """The outbox relay (services/gateway/relay.py): a pass at start, then every relay_seconds. A pass that
        failed (the broker refused a publish, the database went away) leaves its records in the outbox, and is tried
        again after relay_retry_s, doubling while it keeps failing, up to relay_seconds: a restarted gateway whose
        first pass failed would otherwise leave what a dead one stored unpublished for a whole relay_seconds."""
        failures = 0
        while True:
            try:
                self.relayed.inc(await self.relay.run_once())
                failures = 0
            except Exception:  # noqa: BLE001 - the relay must outlive a broker or database hiccup
                failures += 1
                log.exception("outbox relay pass failed; retrying")
            await asyncio.sleep(after_failures(failures, self.settings.relay_retry_s, self.settings.relay_seconds))
