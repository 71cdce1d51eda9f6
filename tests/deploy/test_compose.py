"""docker-compose.yml against the code: service names, commands, ports and settings the services really read."""

from __future__ import annotations

import re

import pytest
import yaml

from labelmesh.stack import SERVICES
from tests.deploy.catalogue import GRPC_PORT, NON_SETTINGS_ENV, ROOT, SETTINGS, default_port, env_names

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROMETHEUS = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())


def _interpolate(value: object) -> str:
    """Compose's ${VAR:-default}, as docker compose would resolve it with VAR unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def test_compose_runs_infrastructure_the_five_services_and_monitoring() -> None:
    assert set(SERVICES) | {"kafka", "mongo", "topics", "prometheus", "kafka-exporter"} <= set(COMPOSE["services"])
    assert "KAFKA_PROCESS_ROLES" in COMPOSE["services"]["kafka"]["environment"]  # KRaft, no ZooKeeper
    assert "zookeeper" not in COMPOSE["services"]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_runs_its_own_command_on_the_image_ci_builds(service: str) -> None:
    spec = COMPOSE["services"][service]
    assert spec["command"] == ["run", service]
    assert spec["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert (ROOT / spec["build"]["context"] / spec["build"]["dockerfile"]).is_file()
    assert spec["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert COMPOSE["services"]["topics"]["command"] == ["topics"]


@pytest.mark.parametrize("service", SERVICES)
def test_environment_names_are_settings_the_service_reads(service: str) -> None:
    env = COMPOSE["services"][service]["environment"]
    unknown = set(env) - env_names(SETTINGS[service]) - NON_SETTINGS_ENV
    assert not unknown, f"{service} ignores {sorted(unknown)} (not a field of {SETTINGS[service].__name__})"


@pytest.mark.parametrize("service", SERVICES)
def test_environment_values_parse_and_point_at_the_compose_infrastructure(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("LABELMESH_"):
            monkeypatch.delenv(name)
    for name, value in COMPOSE["services"][service]["environment"].items():
        monkeypatch.setenv(name, _interpolate(value))
    settings = SETTINGS[service]()
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.mongo_uri.startswith("mongodb://mongo:27017")
    assert settings.http_host == "0.0.0.0"  # reachable from Prometheus in another container
    assert settings.http_port == default_port(service)
    ports = COMPOSE["services"][service]["ports"]
    assert f"{settings.http_port}:{settings.http_port}" in ports
    health = " ".join(COMPOSE["services"][service]["healthcheck"]["test"])
    assert f"127.0.0.1:{settings.http_port}/ready" in health
    if service == "gateway":
        assert settings.grpc_host == "0.0.0.0" and settings.grpc_port == GRPC_PORT
        assert f"{GRPC_PORT}:{GRPC_PORT}" in ports


def test_kafka_listener_is_the_bootstrap_the_services_use() -> None:
    kafka = COMPOSE["services"]["kafka"]["environment"]
    assert "PLAINTEXT://kafka:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "--kafka.server=kafka:9092" in COMPOSE["services"]["kafka-exporter"]["command"]


def test_prometheus_scrapes_every_service_on_its_port_with_the_labels_the_rules_use() -> None:
    job = next(j for j in PROMETHEUS["scrape_configs"] if j["job_name"] == "labelmesh")
    assert job["honor_labels"] is True
    scraped = {c["labels"]["service"]: c["targets"] for c in job["static_configs"]}
    assert scraped == {s: [f"{s}:{default_port(s)}"] for s in SERVICES}
    mounts = COMPOSE["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    assert "./deploy/prometheus/rules:/etc/prometheus/rules:ro" in mounts
    assert PROMETHEUS["rule_files"] == ["/etc/prometheus/rules/*.yml"]


def test_every_mounted_path_exists() -> None:
    for name, spec in COMPOSE["services"].items():
        for volume in spec.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
