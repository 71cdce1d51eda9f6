"""Starts the five services as separate processes (as a deployment would) and waits until each is ready."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

SERVICES = ("gateway", "prelabeler", "router", "qc", "trainer")
DEFAULT_PORTS = {"prelabeler": 9101, "router": 9102, "qc": 9103, "trainer": 9104, "gateway": 9105}


@dataclass
class ServiceProcess:
    name: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "labelmesh.cli", "run", self.name], env=env, stdout=log, stderr=subprocess.STDOUT
        )

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
    """The five service processes with a shared environment; ports offset so stacks can sit side by side."""

    env: dict[str, str]
    log_dir: Path
    port_offset: int = 0
    grpc_port: int = 50051
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in SERVICES:
            port = DEFAULT_PORTS[name] + self.port_offset
            self.processes[name] = ServiceProcess(name, port, self.log_dir / f"{name}.log")

    def environ(self, name: str) -> dict[str, str]:
        env = {**os.environ, **self.env}
        env[f"LABELMESH_{name.upper()}_HTTP_PORT"] = str(self.processes[name].port)
        env["LABELMESH_GATEWAY_GRPC_PORT"] = str(self.grpc_port)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        return env

    def start(self, name: str) -> None:
        self.processes[name].start(self.environ(name))

    async def wait_ready(self, names: tuple[str, ...] = SERVICES, timeout: float = 180.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = list(names)
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
        for name in SERVICES:
            self.start(name)
        await self.wait_ready()

    def stop_all(self) -> dict[str, int | None]:
        return {name: proc.stop() for name, proc in self.processes.items()}
