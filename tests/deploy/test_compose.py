"""docker-compose.yml, loaded the way `docker compose` loads it (compose-go: schema validation, interpolation,
merges), against the code: service names, commands, ports and the settings the services really read."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from labelmesh.stack import SERVICES
from tests.deploy.catalogue import GRPC_PORT, NON_SETTINGS_ENV, ROOT, SETTINGS, default_port, deploycheck, env_names

PROMETHEUS = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())


def _load(path: Path) -> subprocess.CompletedProcess[str]:
    # Interpolation as on a machine where none of the ${...} variables is set: their defaults apply.
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELMESH_")}
    return subprocess.run([deploycheck(), "compose", str(path)], env=env, capture_output=True, text=True, timeout=60)


@functools.cache
def compose() -> dict:
    result = _load(ROOT / "docker-compose.yml")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def service(name: str) -> dict:
    return compose()["services"][name]


def test_the_compose_loader_rejects_what_docker_compose_would(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((ROOT / "docker-compose.yml").read_text().replace("    restart: unless-stopped", "    restrat: x", 1))
    result = _load(broken)
    assert result.returncode == 1 and "restrat" in result.stderr


def test_compose_runs_infrastructure_the_five_services_and_monitoring() -> None:
    assert set(SERVICES) | {"kafka", "mongo", "topics", "prometheus", "kafka-exporter", "grafana"} == set(
        compose()["services"])
    assert service("kafka")["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_runs_its_own_command_on_the_image_ci_builds(name: str) -> None:
    spec = service(name)
    assert spec["command"] == ["run", name]
    assert spec["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert (Path(spec["build"]["context"]) / spec["build"]["dockerfile"]).is_file()
    assert spec["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert spec["depends_on"]["mongo"]["condition"] == "service_healthy"
    topics = service("topics")
    assert topics["command"] == ["topics"] and topics["depends_on"]["kafka"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", SERVICES)
def test_environment_names_are_settings_the_service_reads(name: str) -> None:
    unknown = set(service(name)["environment"]) - env_names(SETTINGS[name]) - NON_SETTINGS_ENV
    assert not unknown, f"{name} ignores {sorted(unknown)} (not a field of {SETTINGS[name].__name__})"


@pytest.mark.parametrize("name", SERVICES)
def test_environment_values_parse_and_point_at_the_compose_infrastructure(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in list(os.environ):
        if var.startswith("LABELMESH_"):
            monkeypatch.delenv(var)
    for var, value in service(name)["environment"].items():
        monkeypatch.setenv(var, value)
    settings = SETTINGS[name]()
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.mongo_uri.startswith("mongodb://mongo:27017")
    assert settings.http_host == "0.0.0.0"  # reachable from Prometheus in another container
    assert settings.http_port == default_port(name)
    published = {(p["target"], int(p["published"])) for p in service(name)["ports"]}
    assert (settings.http_port, settings.http_port) in published
    assert f"127.0.0.1:{settings.http_port}/ready" in " ".join(service(name)["healthcheck"]["test"])
    if name == "gateway":
        assert settings.grpc_host == "0.0.0.0" and settings.grpc_port == GRPC_PORT
        assert (GRPC_PORT, GRPC_PORT) in published


def test_kafka_listener_is_the_bootstrap_the_services_use() -> None:
    kafka = service("kafka")["environment"]
    assert "PLAINTEXT://kafka:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "--kafka.server=kafka:9092" in service("kafka-exporter")["command"]


def test_prometheus_scrapes_every_service_on_its_port_with_the_labels_the_rules_use() -> None:
    job = next(j for j in PROMETHEUS["scrape_configs"] if j["job_name"] == "labelmesh")
    assert job["honor_labels"] is True
    scraped = {c["labels"]["service"]: c["targets"] for c in job["static_configs"]}
    assert scraped == {s: [f"{s}:{default_port(s)}"] for s in SERVICES}
    exporter = next(j for j in PROMETHEUS["scrape_configs"] if j["job_name"] == "kafka-exporter")
    assert exporter["static_configs"][0]["targets"] == ["kafka-exporter:9308"]
    mounts = {m["target"]: Path(m["source"]) for m in service("prometheus")["volumes"] if m["type"] == "bind"}
    assert mounts["/etc/prometheus/prometheus.yml"] == ROOT / "deploy/prometheus/prometheus.yml"
    assert mounts["/etc/prometheus/rules"] == ROOT / "deploy/prometheus/rules"
    assert PROMETHEUS["rule_files"] == ["/etc/prometheus/rules/*.yml"]


def test_every_bind_mount_exists() -> None:
    for name, spec in compose()["services"].items():
        for volume in spec.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name} mounts missing {volume['source']}"
