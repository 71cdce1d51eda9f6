"""The gateway service's wiring: its gRPC server, event handlers and background jobs (app.py: wiring only)."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from labelmesh.runtime.service import ServiceRuntime
from schemas.rpc import gateway_pb2 as pb
from schemas.rpc import gateway_pb2_grpc as pb_grpc
from services.gateway.admin_api import AdminServicer
from services.gateway.annotation_api import AnnotationServicer
from services.gateway.api import Gateway
from services.gateway.domain import SERVICE
from services.gateway.grpc_metrics import GrpcMetrics
from services.gateway.handlers import HINT_TOPICS, TOPICS, GatewayHandlers
from services.gateway.health import ReadinessHealth
from services.gateway.hints import FETCH_MAX_WAIT_MS, FETCH_MIN_BYTES, PROJECTION
from services.gateway.ingest_api import IngestServicer
from services.gateway.jobs import BackgroundJobs
from services.gateway.malformed import RejectMalformedRequests
from services.gateway.store.progress import Progress
from services.gateway.read_api import ProjectServicer
from services.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)
SERVICE_NAMES = tuple(pb.DESCRIPTOR.services_by_name[n].full_name for n in pb.DESCRIPTOR.services_by_name)


class GatewayService:
    def __init__(self, rt: ServiceRuntime, settings: GatewaySettings) -> None:
        self.rt = rt
        self.settings = settings
        self.gw = Gateway(rt, settings)
        self.handlers = GatewayHandlers(self.gw, Progress(rt.db))
        self.jobs = BackgroundJobs(self.gw, rt.registry)
        self.health = ReadinessHealth(rt.ready, SERVICE_NAMES, settings.health_check_s)
        self.server: grpc.aio.Server | None = None
        self.port: int | None = None

    def wire(self) -> None:
        # One subscription: the bus's inbox is the service's, so a second group would claim these events first.
        self.rt.bus.subscribe(list(TOPICS), self.handlers.on_events)
        # Every replica hears every routed and finalized item, whichever partitions it owns, to keep its index of
        # open tasks (a hint, in memory only), decoding only the fields the index reads (services/gateway/hints.py).
        self.rt.bus.subscribe(list(HINT_TOPICS), self.handlers.on_hints, name=f"{SERVICE}.hints", broadcast=True,
                              projection=PROJECTION, fetch_min_bytes=FETCH_MIN_BYTES,
                              fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
        self.rt.on_start.append(self.start_grpc)
        self.rt.on_started.append(self.health.start)  # the broker is connected only from here on
        # The relay publishes: started before the broker connected, its pass at start raced the connection and
        # failed whenever it got to its publish first (IncorrectState), leaving a dead gateway's records unpublished.
        self.rt.on_started.append(self.start_jobs)
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
        log.info("gRPC listening on %s:%s", self.settings.grpc_host, self.port)

    async def start_jobs(self) -> None:
        self.jobs.start()

    async def stop_grpc(self) -> None:
        await self.jobs.stop()
        await self.health.stop()
        if self.server:
            await self.server.stop(grace=5)


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
