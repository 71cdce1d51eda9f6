"""A real Prometheus (Debian's package) with the compose scrape config and the alert rules scrapes a running
gateway; the test reads the gateway's metrics, target health and rule evaluation back through Prometheus's API."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from labelmesh.client import GatewayClient
from labelmesh.stack import SERVICES, Stack
from tests.conftest import eventually
from tests.deploy.catalogue import ROOT, prometheus
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration

ADMIN = "prometheus-test-admin"
PORT_OFFSET = 300
GRPC_PORT = 50351


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(stack: Stack, tmp_path: Path) -> Path:
    """deploy/prometheus/prometheus.yml with its targets moved to where this test's processes listen."""
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    config["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(p) for p in sorted((ROOT / "deploy/prometheus/rules").glob("*.yml"))]
    config["scrape_configs"] = [job for job in config["scrape_configs"] if job["job_name"] == "labelmesh"]
    for target in config["scrape_configs"][0]["static_configs"]:
        service = target["labels"]["service"]
        target["targets"] = [f"127.0.0.1:{stack.processes[service].port}"]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class PrometheusServer:
    def __init__(self, config: Path, data: Path) -> None:
        self.port = _free_port()
        self.log = data.parent / "prometheus.log"
        self.process = subprocess.Popen(
            [prometheus(), f"--config.file={config}", f"--storage.tsdb.path={data}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
        )

    async def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)

        def get() -> Any:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = json.load(response)
            except OSError:
                if self.process.poll() is not None:
                    raise AssertionError(f"prometheus exited:\n{self.log.read_text()[-3000:]}") from None
                return None
            assert body["status"] == "success", body
            return body["data"]

        return await asyncio.to_thread(get)

    async def query(self, promql: str) -> dict[str, float] | None:
        """Instant query; {service or topic label: value}, None until Prometheus answers."""
        data = await self.api("query", query=promql)
        if data is None:
            return None
        return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in data["result"]}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
async def gateway(env: Env, tmp_path: Path):  # type: ignore[no-untyped-def]
    stack = Stack(env={**env.environ(), "LABELMESH_GATEWAY_ADMIN_TOKEN": ADMIN}, log_dir=tmp_path / "logs",
                  port_offset=PORT_OFFSET, grpc_port=GRPC_PORT)
    stack.start("gateway")
    try:
        await stack.wait_ready(("gateway",), timeout=120)
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture
async def prometheus_server(gateway: Stack, tmp_path: Path):  # type: ignore[no-untyped-def]
    server = PrometheusServer(_config(gateway, tmp_path), tmp_path / "tsdb")
    try:
        yield server
    finally:
        server.stop()


async def test_prometheus_scrapes_the_gateway_and_evaluates_the_rules(
    gateway: Stack, prometheus_server: PrometheusServer
) -> None:
    # The gateway's target is up under the labels the alert rules select on; the four services not started are down.
    async def up() -> dict[str, float] | None:
        result = await prometheus_server.query('up{job="labelmesh"}')
        return result if result and len(result) == len(SERVICES) else None

    targets = {json.loads(k)["service"]: v for k, v in (await eventually(up, timeout=60)).items()}
    assert targets == {"gateway": 1.0, "prelabeler": 0.0, "router": 0.0, "qc": 0.0, "trainer": 0.0}

    # Something the gateway did shows up through Prometheus: configuring a project publishes project.configured.
    client = GatewayClient(f"127.0.0.1:{GRPC_PORT}", ADMIN)
    try:
        await client.configure_project("prom", ["card_arrival", "exchange_rate"], guidelines="Pick the intent.")
    finally:
        await client.close()

    async def published() -> dict[str, float] | None:
        return await prometheus_server.query(
            'labelmesh_events_published_total{job="labelmesh", service="gateway", topic="project.configured"}')

    (value,) = (await eventually(published, timeout=60)).values()
    assert value == 1.0

    # The rule files loaded and every rule evaluates without error against the real series.
    async def rules_evaluated() -> list[dict] | None:
        data = await prometheus_server.api("rules")
        rules = [r for g in (data or {}).get("groups", []) for r in g["rules"]]
        return rules if rules and all(r["health"] == "ok" for r in rules) else None

    rules = await eventually(rules_evaluated, timeout=60)
    assert {r["name"] for r in rules} >= {"LabelmeshServiceDown", "LabelmeshConsumerLagGrowing", "labelmesh:consumer_lag:sum"}

    # LabelmeshServiceDown is pending (it fires after 2 minutes) for exactly the services that are not running.
    async def down_alerts() -> set[str] | None:
        data = await prometheus_server.api("alerts")
        names = {a["labels"]["service"] for a in (data or {}).get("alerts", [])
                 if a["labels"]["alertname"] == "LabelmeshServiceDown"}
        return names if len(names) == len(SERVICES) - 1 else None

    assert await eventually(down_alerts, timeout=60) == set(SERVICES) - {"gateway"}
