"""The Strimzi resources of every overlay, validated against Strimzi's own CRD schemas (vendored in strimzi/)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.test_kubernetes import OVERLAYS, render

CRDS = Path(__file__).parent / "strimzi"
API_VERSION = "kafka.strimzi.io/v1"
# Read by Strimzi before 0.48 only; ignored since (Strimzi runs KRaft clusters with node pools only, from 0.46).
OBSOLETE_ANNOTATIONS = {"strimzi.io/node-pools", "strimzi.io/kraft"}


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever the CRD lists an object's fields: what the API server does
    with field validation `Strict` (kubectl's default since Kubernetes 1.27), where it would otherwise drop them."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(v) for v in schema]
    return schema


@functools.cache
def schemas() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """(apiVersion, kind) -> a validator for every served version of the vendored CRDs."""
    found = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        spec = crd["spec"]
        for version in spec["versions"]:
            if version["served"]:
                schema = _strict(version["schema"]["openAPIV3Schema"])
                # OpenAPI 3.0 schemas: draft 4's keyword semantics (exclusiveMinimum as a flag, no `const`).
                found[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = jsonschema.Draft4Validator(schema)
    return found


def _errors(obj: dict) -> list[str]:
    validator = schemas().get((obj["apiVersion"], obj["kind"]))
    if validator is None:
        return [f"no CRD serves {obj['apiVersion']} {obj['kind']}"]
    return [f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}" for e in validator.iter_errors(obj)]


def strimzi_objects(overlay: str) -> list[dict]:
    return [o for o in render(overlay) if o["apiVersion"].startswith("kafka.strimzi.io/")]


def test_the_vendored_crds_serve_and_store_v1_only() -> None:
    assert set(schemas()) == {(API_VERSION, kind) for kind in ("Kafka", "KafkaNodePool", "KafkaTopic")}
    assert (CRDS / "LICENSE").read_text().lstrip().startswith("Apache License")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_strimzi_resources_use_the_v1_api_and_match_its_schema(overlay: str) -> None:
    objs = strimzi_objects(overlay)
    kinds = {o["kind"] for o in objs}
    assert "KafkaTopic" in kinds
    if overlay == "dev":
        assert {"Kafka", "KafkaNodePool"} <= kinds
    for obj in objs:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        assert obj["apiVersion"] == API_VERSION, name
        assert not OBSOLETE_ANNOTATIONS & set(obj["metadata"].get("annotations", {})), name
        assert _errors(obj) == [], name


@pytest.mark.parametrize(("kind", "break_it", "message"), [
    ("KafkaTopic", lambda o: o["spec"].update(partitons=3), "'partitons' was unexpected"),
    ("KafkaTopic", lambda o: o["spec"].update(partitions="3"), "'3' is not of type 'integer'"),
    ("Kafka", lambda o: o["spec"]["kafka"]["listeners"][0].update(type="internel"), "'internel' is not one of"),
    ("KafkaNodePool", lambda o: o["spec"].update(roles=["leader"]), "'leader' is not one of"),
    ("Kafka", lambda o: o["spec"].update(zookeeper={"replicas": 3}), "'zookeeper' was unexpected"),
])
def test_the_schema_check_rejects_a_broken_resource(kind: str, break_it: Any, message: str) -> None:
    """The check can fail: a misspelt field, a wrong type or value, or a section v1 removed."""
    (obj, *_) = [o for o in strimzi_objects("dev") if o["kind"] == kind]
    broken = copy.deepcopy(obj)
    break_it(broken)
    errors = _errors(broken)
    assert any(message in e for e in errors), errors
    assert _errors({**obj, "apiVersion": "kafka.strimzi.io/v1beta2"}) == [
        f"no CRD serves kafka.strimzi.io/v1beta2 {kind}"]
