"""Starts the five services as separate processes (as a deployment would), N replicas each, and waits until ready."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

SERVICES = ("gateway", "prelabeler", "router", "qc", "trainer")
DEFAULT_PORTS = {"prelabeler": 9101, "router": 9102, "qc": 9103, "trainer": 9104, "gateway": 9105}
# The trainer is a singleton (a second one would train and promote the same project twice): one process, always.
SINGLETONS = frozenset({"trainer"})
# Replica n of a service serves HTTP on its first replica's port + n * REPLICA_PORT_STEP, gRPC on grpc_port + n.
REPLICA_PORT_STEP = 1000


def replica_counts(env: Mapping[str, str], default: int = 1) -> dict[str, int]:
    """Replicas per service from LABELMESH_REPLICAS (every service) and LABELMESH_<SERVICE>_REPLICAS (one).

    The trainer always runs one; asking for more is an error rather than a silent clamp.
    """
    base = int(env.get("LABELMESH_REPLICAS", default))
    counts = {s: int(env.get(f"LABELMESH_{s.upper()}_REPLICAS", 1 if s in SINGLETONS else base)) for s in SERVICES}
    for service, n in counts.items():
        if n < 1:
            raise ValueError(f"{service}: replicas must be >= 1, got {n}")
        if service in SINGLETONS and n != 1:
            raise ValueError(f"{service} runs as one process (it is the single writer of model versions), got {n}")
    return counts


def instance_name(service: str, replica: int) -> str:
    """`router` for a service's first replica, `router-1`, `router-2`, ... for the others."""
    return service if replica == 0 else f"{service}-{replica}"


@dataclass
class ServiceProcess:
    name: str  # the instance: `router`, `router-1`, ...
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    service: str = ""
    replica: int = 0
    grpc_port: int | None = None

    def __post_init__(self) -> None:
        self.service = self.service or self.name

    def start(self, env: dict[str, str]) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "labelmesh.cli", "run", self.service], env=env, stdout=log, stderr=subprocess.STDOUT
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@dataclass
class Stack:
    """The service processes with a shared environment; ports offset so stacks can sit side by side.

    `processes` maps instance names (`router`, `router-1`, ...) to processes; `replicas` says how many each
    service starts with (default: LABELMESH_REPLICAS / LABELMESH_<SERVICE>_REPLICAS in `env`, else one).
    """

    env: dict[str, str]
    log_dir: Path
    port_offset: int = 0
    grpc_port: int = 50051
    replicas: dict[str, int] | None = None
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # A stack is one deployment: its gateways share one random golden salt unless one is given (a gateway
        # refuses to start without a salt, services/gateway/settings.py).
        self.env.setdefault("LABELMESH_GATEWAY_GOLDEN_SALT", secrets.token_hex(16))
        counts = replica_counts({**os.environ, **self.env})
        counts.update(self.replicas or {})
        self.replicas = counts
        for service in SERVICES:
            for n in range(counts[service]):
                self._instance(service, n)

    def _instance(self, service: str, replica: int) -> ServiceProcess:
        name = instance_name(service, replica)
        if name not in self.processes:
            self.processes[name] = ServiceProcess(
                name, DEFAULT_PORTS[service] + self.port_offset + replica * REPLICA_PORT_STEP,
                self.log_dir / f"{name}.log", service=service, replica=replica,
                grpc_port=self.grpc_port + replica if service == "gateway" else None)
        return self.processes[name]

    def instances(self, service: str) -> list[ServiceProcess]:
        """The service's instances, running or not, in replica order."""
        return sorted((p for p in self.processes.values() if p.service == service), key=lambda p: p.replica)

    @property
    def grpc_ports(self) -> list[int]:
        """Every running gateway's gRPC port (a client may use any of them)."""
        return [p.grpc_port for p in self.instances("gateway") if p.running and p.grpc_port is not None]

    def environ(self, name: str) -> dict[str, str]:
        proc = self.processes[name]
        env = {**os.environ, **self.env}
        env[f"LABELMESH_{proc.service.upper()}_HTTP_PORT"] = str(proc.port)
        env["LABELMESH_GATEWAY_GRPC_PORT"] = str(proc.grpc_port or self.grpc_port)
        env["LABELMESH_INSTANCE"] = name
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        return env

    def start(self, name: str) -> None:
        self.processes[name].start(self.environ(name))

    async def wait_ready(self, names: Iterable[str] | None = None, timeout: float = 180.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = list(self.processes if names is None else names)
        while pending:
            for name in list(pending):
                proc = self.processes[name]
                if proc.process is not None and proc.process.poll() is not None:
                    tail = proc.log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{name} exited with {proc.process.returncode}:\n{tail}")
                if await asyncio.to_thread(proc.ready):
                    pending.remove(name)
            if pending and loop.time() > deadline:
                raise TimeoutError(f"services not ready after {timeout}s: {pending}")
            await asyncio.sleep(0.5)

    async def start_all(self) -> None:
        for name in self.processes:
            self.start(name)
        await self.wait_ready()

    async def scale(self, service: str, count: int, timeout: float = 180.0) -> None:
        """Run exactly `count` instances of the service: new ones start (and are ready) before any surplus stops
        with SIGTERM, highest replica first, as a Deployment scales."""
        if service in SINGLETONS and count != 1:
            raise ValueError(f"{service} runs as one process")
        wanted = [self._instance(service, n) for n in range(count)]
        new = [p.name for p in wanted if not p.running]
        for name in new:
            self.start(name)
        await self.wait_ready(new, timeout)
        for proc in reversed(self.instances(service)[count:]):
            proc.stop()
        self.replicas[service] = count  # type: ignore[index]

    async def rolling_restart(self, service: str, timeout: float = 180.0) -> None:
        """Replace every running instance of the service one at a time: the replacement is started and ready
        before the old process gets SIGTERM (maxSurge 1, maxUnavailable 0). Replacements take fresh replica
        numbers, so old and new run side by side as during a Kubernetes rollout."""
        old = [p for p in self.instances(service) if p.running]
        if service in SINGLETONS:  # Recreate: stop first, then start (one trainer at a time)
            for proc in old:
                proc.stop()
                self.start(proc.name)
                await self.wait_ready((proc.name,), timeout)
            return
        taken = {p.replica for p in self.instances(service)}
        for proc in old:
            replica = next(n for n in range(len(taken) + 1) if n not in taken)
            taken.add(replica)
            fresh = self._instance(service, replica)
            self.start(fresh.name)
            await self.wait_ready((fresh.name,), timeout)
            proc.stop()
            taken.discard(proc.replica)

    def stop_all(self) -> dict[str, int | None]:
        return {name: proc.stop() for name, proc in self.processes.items()}
