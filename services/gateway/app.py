"""The gateway service: the gRPC API for annotation tools, plus the task queues fed by item.routed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Gauge

from labelmesh.runtime.pacing import next_due
from labelmesh.runtime.service import ServiceRuntime
from schemas.events import Envelope, FlagKind, FlagSubject, ItemRouted, LabelFinalized, QcFlagged
from schemas.rpc import gateway_pb2 as pb
from schemas.rpc import gateway_pb2_grpc as pb_grpc
from services.gateway import progress
from services.gateway.admin_api import AdminServicer
from services.gateway.annotation_api import AnnotationServicer
from services.gateway.api import Gateway
from services.gateway.domain import SERVICE
from services.gateway.grpc_metrics import GrpcMetrics
from services.gateway.health import ReadinessHealth
from services.gateway.ingest_api import IngestServicer
from services.gateway.malformed import RejectMalformedRequests
from services.gateway.read_api import ProjectServicer
from services.gateway.relay import GatewayRelay
from services.gateway.settings import GatewaySettings
from services.gateway.store import history as entries
log = logging.getLogger(__name__)
SERVICE_NAMES = tuple(pb.DESCRIPTOR.services_by_name[n].full_name for n in pb.DESCRIPTOR.services_by_name)


class GatewayService:
    def __init__(self, rt: ServiceRuntime, settings: GatewaySettings) -> None:
        self.rt = rt
        self.settings = settings
        self.gw = Gateway(rt, settings)
        self.progress = progress.Progress(rt.db)
        self.server: grpc.aio.Server | None = None
        self.health = ReadinessHealth(rt.ready, SERVICE_NAMES, settings.health_check_s)
        self.port: int | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.relay = GatewayRelay(self.gw)
        self._relayer: asyncio.Task[None] | None = None
        self.relayed = Counter("labelmesh_gateway_relayed_events_total",
                               "Events stored but not published, published by the outbox relay", registry=rt.registry)
        self.open_tasks = Gauge("labelmesh_gateway_open_tasks", "Tasks waiting for humans", ["project", "tier"],
                                registry=rt.registry)
        # How many open tasks this replica's index knows of: tests wait on it, operators see a replica lagging.
        Gauge("labelmesh_gateway_candidate_tasks", "Open tasks in this replica's in-memory index",
              registry=rt.registry).set_function(lambda: len(self.gw.queue.hints))
        self.expired = Counter("labelmesh_gateway_leases_expired_total", "Leases that expired", registry=rt.registry)

    def wire(self) -> None:
        # One subscription: the bus's inbox is the service's, so a second group would claim these events first.
        self.rt.bus.subscribe(sorted({ItemRouted.TOPIC, LabelFinalized.TOPIC, QcFlagged.TOPIC, *progress.TOPICS}),
                              self.on_events)
        # Every replica hears every routed and finalized item, whichever partitions it owns, to keep its index of
        # open tasks (a hint, in memory only).
        self.rt.bus.subscribe([ItemRouted.TOPIC, LabelFinalized.TOPIC], self.on_hints, name=f"{SERVICE}.hints",
                              broadcast=True)
        self.rt.on_start.append(self.start_grpc)
        self.rt.on_started.append(self.health.start)  # the broker is connected only from here on
        self.rt.on_stop.append(self.stop_grpc)

    async def start_grpc(self) -> None:
        await self.gw.ensure_indexes()
        await self.gw.queue.load_hints()
        server = grpc.aio.server(interceptors=[GrpcMetrics(self.rt.registry), RejectMalformedRequests()],
                                 options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        pb_grpc.add_IngestServiceServicer_to_server(IngestServicer(self.gw), server)
        pb_grpc.add_AnnotationServiceServicer_to_server(AnnotationServicer(self.gw), server)
        pb_grpc.add_AdminServiceServicer_to_server(AdminServicer(self.gw), server)
        pb_grpc.add_ProjectServiceServicer_to_server(ProjectServicer(self.gw), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health.servicer, server)
        reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        address = f"{self.settings.grpc_host}:{self.settings.grpc_port}"
        if self.settings.tls_cert_file and self.settings.tls_key_file:
            creds = grpc.ssl_server_credentials(
                [(Path(self.settings.tls_key_file).read_bytes(), Path(self.settings.tls_cert_file).read_bytes())]
            )
            self.port = server.add_secure_port(address, creds)
        else:
            self.port = server.add_insecure_port(address)
        await server.start()
        await self.health.hold()  # NOT_SERVING until the broker has started and answers
        self.server = server
        self._sweeper = asyncio.create_task(self._sweep())
        self._relayer = asyncio.create_task(self._relay())
        log.info("gRPC listening on %s:%s", self.settings.grpc_host, self.port)

    async def stop_grpc(self) -> None:
        for task in (self._sweeper, self._relayer):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.health.stop()
        if self.server:
            await self.server.stop(grace=5)

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
        """The outbox relay (services/gateway/relay.py): a pass at start, then every relay_seconds."""
        while True:
            try:
                self.relayed.inc(await self.relay.run_once())
            except Exception:  # noqa: BLE001 - the relay must outlive a broker or database hiccup
                log.exception("outbox relay pass failed; retrying")
            await asyncio.sleep(self.settings.relay_seconds)

    async def on_hints(self, events: list[Envelope]) -> None:
        for event in events:
            if isinstance(event, ItemRouted):
                self.gw.queue.hear(event)
            elif isinstance(event, LabelFinalized):
                self.gw.queue.hints.close_item(event.project, event.item_id)

    async def on_events(self, events: list[Envelope]) -> None:
        history = []  # written in bulk after the batch: a round trip per event would halve the gateway's rate
        ops: list[tuple[str, Any]] = []  # the queue's changes, in order
        for event in events:
            if isinstance(event, ItemRouted):
                ops.append(("add", event))
                history.append(entries.routed(event))
            elif isinstance(event, LabelFinalized):
                ops.append(("close", (event.project, event.item_id)))
                history.append(entries.finalized(event))
            elif isinstance(event, QcFlagged):
                if event.item_id:
                    history.append(entries.flagged(event))
                if event.subject == FlagSubject.ANNOTATOR and event.kind == FlagKind.ANNOTATOR_SUSPENDED:
                    await self.gw.annotators.suspend(event.subject_id)
                    self.gw.forget_annotator(event.subject_id)  # here at once
                    ops.append(("requeue", event.subject_id))
        await self.gw.queue.apply(ops)
        await self.gw.history.add(history)
        await self.progress.on_events(events)  # item progress and final labels (services/gateway/progress.py)


def create_app(settings: GatewaySettings | None = None) -> ServiceRuntime:
    settings = settings or GatewaySettings()
    refused = settings.unsafe_defaults()
    if refused and not settings.dev_mode:
        raise SystemExit("gateway refuses to start (LABELMESH_GATEWAY_DEV_MODE=1 allows it on a laptop): "
                         + "; ".join(refused))
    rt = ServiceRuntime(SERVICE, settings)
    service = GatewayService(rt, settings)
    service.wire()
    rt.component = service
    return rt
