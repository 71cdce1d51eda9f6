"""Fixtures shared by the gateway's integration tests: an in-process gateway and one running as its own process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from pymongo import MongoClient

from labelmesh.client import GatewayClient
from labelmesh.runtime.service import ServiceRuntime
from labelmesh.runtime.settings import CommonSettings
from labelmesh.stack import ServiceProcess
from schemas.events import FlagKind, FlagSubject, ItemRouted, LabelScore, QcFlagged, Thresholds, Tier
from schemas.rpc import gateway_pb2 as pb
from schemas.rpc import gateway_pb2_grpc as pb_grpc
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from tests.gateway_helpers import ADMIN, EDGE_ADMIN, EDGE_PROJECT, LABELS, PROJECT, Edge, GatewayProcess, free_port
from tests.kafka_helpers import Env, new_env


@pytest.fixture
async def start_gateway(env: Env) -> AsyncIterator[Callable[..., Awaitable[ServiceRuntime]]]:
    """Starts gateways in this process (5 s leases, swept every 0.2 s with 0.1 s grace, no golden tasks, admin
    token ADMIN, any setting overridden); each is stopped after the test."""
    started: list[ServiceRuntime] = []

    async def start(**overrides: Any) -> ServiceRuntime:
        settings = {"grpc_port": 0, "admin_token": ADMIN, "lease_seconds": 5.0, "lease_grace_seconds": 0.1, "sweep_seconds": 0.2,
                    "golden_rate": 0.0, **overrides}
        runtime = create_app(env.settings(GatewaySettings, **settings))
        await runtime.start()
        started.append(runtime)
        return runtime

    try:
        yield start
    finally:
        for runtime in reversed(started):
            await runtime.stop()


@pytest.fixture
async def gateway(start_gateway: Callable[..., Awaitable[ServiceRuntime]]) -> AsyncIterator[
        tuple[ServiceRuntime, GatewayClient]]:
    """A gateway in this process (start_gateway's defaults) and an admin client; project PROJECT is configured
    with LABELS and guidelines "v1"."""
    runtime = await start_gateway()
    client = GatewayClient(f"127.0.0.1:{runtime.component.port}", ADMIN)
    await client.configure_project(PROJECT, LABELS, guidelines="v1")
    try:
        yield runtime, client
    finally:
        await client.close()


@pytest.fixture
def edge(env: Env, tmp_path: Path) -> Iterator[Edge]:
    """`labelmesh run gateway` as a process (see _edge_process), fresh for one test."""
    with _edge_process(env, tmp_path / "gateway.log") as running:
        yield running


@pytest.fixture(scope="module")
def module_edge(infrastructure: CommonSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    """The same gateway process shared by a module's tests, for tables of calls that must change nothing."""
    with _edge_process(asyncio.run(new_env()), tmp_path_factory.mktemp("edge") / "gateway.log") as running:
        yield running


@pytest.fixture
def gateway_processes(env: Env, tmp_path: Path) -> Iterator[Callable[[int], list[GatewayProcess]]]:
    """Starts n `labelmesh run gateway` processes on one database and one set of topics (replicas, as a
    deployment runs them; admin token ADMIN, no golden tasks); all are stopped after the test."""
    started: list[ServiceProcess] = []

    def start(n: int) -> list[GatewayProcess]:
        replicas = []
        for _ in range(n):
            grpc_port, http_port = free_port(), free_port()
            process = ServiceProcess("gateway", http_port, tmp_path / f"gateway-{grpc_port}.log")
            process.start({**os.environ, **env.environ(), "LABELMESH_GATEWAY_GRPC_PORT": str(grpc_port),
                           "LABELMESH_GATEWAY_HTTP_PORT": str(http_port), "LABELMESH_GATEWAY_ADMIN_TOKEN": ADMIN,
                           "LABELMESH_GATEWAY_GOLDEN_RATE": "0"})
            started.append(process)
            replicas.append(GatewayProcess(f"127.0.0.1:{grpc_port}", process))
        return replicas

    try:
        yield start
    finally:
        for process in started:
            process.stop()


@contextlib.contextmanager
def _edge_process(env: Env, log_path: Path) -> Iterator[Edge]:
    """`labelmesh run gateway` as a process, with project EDGE_PROJECT, items i1 and i2, annotators ann, exp,
    sus (suspended by a qc.flagged event) and out (a member of another project only), and ann's lease on i1 already expired (1 s leases, sweeper off)."""
    grpc_port, http_port = free_port(), free_port()
    environ = {**os.environ, **env.environ(), "LABELMESH_GATEWAY_GRPC_PORT": str(grpc_port),
               "LABELMESH_GATEWAY_HTTP_PORT": str(http_port), "LABELMESH_GATEWAY_ADMIN_TOKEN": EDGE_ADMIN,
               "LABELMESH_GATEWAY_LEASE_SECONDS": "1.0", "LABELMESH_GATEWAY_SWEEP_SECONDS": "3600",
               "LABELMESH_GATEWAY_GOLDEN_RATE": "0", "LABELMESH_GATEWAY_MAX_TEXT_CHARS": "2000",
               "LABELMESH_GATEWAY_MAX_BATCH_ITEMS": "50"}
    log = log_path.open("wb")
    process = subprocess.Popen([sys.executable, "-m", "labelmesh.cli", "run", "gateway"], env=environ,
                               stdout=log, stderr=subprocess.STDOUT)
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    mongo = None
    try:
        grpc.channel_ready_future(channel).result(timeout=120)
        admin_meta = (("authorization", f"Bearer {EDGE_ADMIN}"),)
        admin = pb_grpc.AdminServiceStub(channel)
        ingest = pb_grpc.IngestServiceStub(channel)
        annotation = pb_grpc.AnnotationServiceStub(channel)
        admin.ConfigureProject(pb.ConfigureProjectRequest(project=EDGE_PROJECT, labels=LABELS, guidelines="g"),
                               metadata=admin_meta)
        tokens = {"admin": EDGE_ADMIN}
        for name, role, projects in (("ann", "annotator", ["*"]), ("exp", "expert", ["*"]),
                                     ("sus", "annotator", ["*"]), ("out", "annotator", ["elsewhere"])):
            tokens[name] = admin.CreateAnnotator(pb.CreateAnnotatorRequest(annotator_id=name, role=role,
                                                                           projects=projects),
                                                 metadata=admin_meta).token
        ingest.IngestItems(pb.IngestItemsRequest(items=[
            pb.IngestItem(project=EDGE_PROJECT, item_id=i, text=f"text {i}") for i in ("i1", "i2")
        ]), metadata=admin_meta)
        asyncio.run(env.publish_events([
            ItemRouted(producer="test", project=EDGE_PROJECT, item_id="i1", tier=Tier.SINGLE, required_annotators=1,
                       top_k=(LabelScore(label="yes", probability=0.8),), thresholds=Thresholds()),
            QcFlagged(producer="test", project=EDGE_PROJECT, subject=FlagSubject.ANNOTATOR, subject_id="sus",
                      kind=FlagKind.ANNOTATOR_SUSPENDED, message="suspended for the fuzz test"),
        ]))
        mongo = MongoClient(env.mongo_uri, tz_aware=True)
        db = mongo[f"{env.namespace}_gateway"]
        ann_meta = (("authorization", f"Bearer {tokens['ann']}"),)
        deadline = time.monotonic() + 60
        while True:  # wait until item.routed became a task and the suspension arrived
            try:
                task = annotation.LeaseTask(pb.LeaseTaskRequest(project=EDGE_PROJECT), metadata=ann_meta)
                if db["annotators"].find_one({"_id": "sus", "suspended": True}):
                    break
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)
        time.sleep(1.2)  # the lease (1 s) runs out; the sweeper is off, so only its expiry time tells
        yield Edge(channel, ingest, annotation, admin, tokens, task.task_id, db, process)
    finally:
        if mongo is not None:
            mongo.close()
        channel.close()
        process.terminate()
        process.wait(30)
        log.close()
