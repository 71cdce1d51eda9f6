"""What the code really exports and accepts, for checking the deployment files against it.

Metric names come from the services' own registries (each app factory builds its runtime without connecting to
anything); environment variable names from the pydantic settings classes; tools from the deploy/local scripts.
"""

from __future__ import annotations

import functools
import importlib
import re
import subprocess
from pathlib import Path

from pydantic_settings import BaseSettings

from labelmesh.runtime.settings import CommonSettings
from labelmesh.stack import DEFAULT_PORTS, SERVICES
from services.gateway.settings import GatewaySettings
from services.prelabeler.settings import PrelabelerSettings
from services.qc.settings import QcSettings
from services.router.settings import RouterSettings
from services.trainer.settings import TrainerSettings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS: dict[str, type[CommonSettings]] = {
    "gateway": GatewaySettings, "prelabeler": PrelabelerSettings, "router": RouterSettings, "qc": QcSettings,
    "trainer": TrainerSettings,
}
assert set(SETTINGS) == set(SERVICES)
GRPC_PORT = GatewaySettings.model_fields["grpc_port"].default
# Series that come from outside the services: Prometheus's own, and kafka-exporter's / Strimzi Kafka Exporter's
# consumer lag (the services do not export their lag).
EXTERNAL_SERIES = {"up", "kafka_consumergroup_lag"}
# Environment variables that are not labelmesh settings but that the deployment files may set on purpose.
NON_SETTINGS_ENV = {"HOME"}
# What a deployment sets before the gateway will start: its secrets, never the public defaults. The app factories
# refuse to build without them (services.gateway.settings.GatewaySettings.unsafe_defaults).
DEPLOYED_SECRETS = {"LABELMESH_GATEWAY_ADMIN_TOKEN": "deploy-test-admin-token",
                    "LABELMESH_GATEWAY_GOLDEN_SALT": "deploy-test-golden-salt"}
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
             "summary": ("", "_sum", "_count", "_created"), "gauge": ("",), "info": ("_info",),
             "stateset": ("",), "enum": ("",), "unknown": ("",)}


def env_names(settings: type[BaseSettings]) -> set[str]:
    """The environment variable names a settings class reads (aliases as written, others prefix + field)."""
    prefix = settings.model_config.get("env_prefix", "")
    names = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        names.add(alias if isinstance(alias, str) else f"{prefix}{name}".upper())
    return names


def default_port(service: str) -> int:
    port = SETTINGS[service].model_fields["http_port"].default
    assert port == DEFAULT_PORTS[service], f"{service}: settings and labelmesh.stack disagree on the HTTP port"
    return port


def build_runtime(service: str):
    """The service's runtime as a deployment builds it, secrets set (connects to nothing)."""
    module = importlib.import_module(f"services.{service}.app")
    if service != "gateway":
        return module.create_app()
    secrets = {name.removeprefix("LABELMESH_GATEWAY_").lower(): value for name, value in DEPLOYED_SECRETS.items()}
    return module.create_app(GatewaySettings(**secrets))


@functools.cache
def exported_series() -> frozenset[str]:
    """Every series name the five services can expose on /metrics (with counter/histogram suffixes)."""
    names: set[str] = set()
    for service in SERVICES:
        runtime = build_runtime(service)
        for family in runtime.registry.collect():
            names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return frozenset(names)


def recorded_series(rule_files: list[Path]) -> set[str]:
    import yaml

    names = set()
    for path in rule_files:
        for group in yaml.safe_load(path.read_text())["groups"]:
            names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return names


_KEYWORDS = {"by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "offset", "bool"}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: its identifiers, less function calls, keywords, label names (inside
    braces and grouping clauses), strings, ranges and dashboard variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', " ", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\w+", " ", text)
    names = re.findall(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text)
    return {n for n in names if n not in _KEYWORDS}


def _tool(script: str, *args: str) -> str:
    out = subprocess.run(["bash", str(ROOT / "deploy/local" / script), *args], check=True, capture_output=True,
                         text=True, timeout=900)
    return out.stdout.strip().splitlines()[-1]


@functools.cache
def promtool() -> str:
    return _tool("prometheus.sh", "path", "promtool")


@functools.cache
def prometheus() -> str:
    return _tool("prometheus.sh", "path", "prometheus")


@functools.cache
def kustomize() -> str:
    return _tool("kustomize.sh", "path")


@functools.cache
def deploycheck() -> str:
    """deploy/check: `crd` (stdin) and `compose FILE` subcommands."""
    return _tool("deploycheck.sh", "path")
