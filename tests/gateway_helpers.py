"""Shared by the gateway's integration tests: names, a routed-item factory, and the subprocess gateway's handle."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from labelmesh.state_digest import digest_documents
from schemas.events import ItemRouted, LabelScore, Thresholds, Tier
from schemas.rpc import gateway_pb2_grpc as pb_grpc
from tests.kafka_helpers import Env

ADMIN = "test-admin"  # the in-process `gateway` fixture's admin token
PROJECT = "gw"  # ... and its project
EDGE_ADMIN = "fuzz-admin-token"  # the subprocess `edge` fixture's admin token
EDGE_PROJECT = "fz"  # ... and its project
LABELS = ["yes", "no", "maybe"]


def routed(item_id: str, tier: Tier, required: int, project: str = PROJECT, prelabel: str = "yes",
           probability: float = 0.6) -> ItemRouted:
    return ItemRouted(producer="test", project=project, item_id=item_id, tier=tier, required_annotators=required,
                      top_k=(LabelScore(label=prelabel, probability=probability),), thresholds=Thresholds(),
                      reasons=("test",))


async def status_of(call: Any) -> grpc.StatusCode:
    """The status an awaited gRPC call fails with (the test fails if it succeeds)."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code()


@dataclass
class GatewayProcess:
    """One gateway replica started as its own process (the `gateway_processes` fixture)."""

    target: str  # its gRPC address
    process: Any  # labelmesh.stack.ServiceProcess

    def metric(self, name: str) -> float | None:
        """A gauge from the replica's /metrics, or None while it is not serving them."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.process.port}/metrics", timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None


async def run_cli(env: Env, port: int, *args: str, cwd: Any = None) -> tuple[int, str, str]:
    """`labelmesh ARGS --gateway 127.0.0.1:PORT` as the admin (ADMIN), in a process of its own: (exit code, stdout,
    stderr). It imports this checkout (PYTHONPATH is inherited)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "labelmesh.cli", *args, "--gateway", f"127.0.0.1:{port}", cwd=cwd,
        env={**os.environ, **env.environ(), "LABELMESH_ADMIN_TOKEN": ADMIN, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Edge:
    """A gateway running as its own process, reached over a blocking channel, with its database opened directly."""

    channel: grpc.Channel
    ingest: pb_grpc.IngestServiceStub
    annotation: pb_grpc.AnnotationServiceStub
    admin: pb_grpc.AdminServiceStub
    tokens: dict[str, str]
    expired_lease: str
    db: Any
    process: subprocess.Popen[bytes]

    def meta(self, who: str) -> tuple[tuple[str, str], ...]:
        if who == "none":
            return ()
        return (("authorization", f"Bearer {self.tokens.get(who, who)}"),)

    @property
    def projects(self) -> pb_grpc.ProjectServiceStub:
        return pb_grpc.ProjectServiceStub(self.channel)

    def state(self) -> dict[str, str]:
        """A digest per collection of the gateway's database: equal before and after means nothing was written."""
        names = sorted(n for n in self.db.list_collection_names() if not n.startswith("system."))
        return digest_documents({n: list(self.db[n].find()) for n in names})
