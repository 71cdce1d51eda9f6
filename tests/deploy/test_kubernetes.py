"""The kustomize overlays, rendered by a real kustomize and checked against Kubernetes' schemas and the code."""

from __future__ import annotations

import functools
import os
import subprocess
from collections import defaultdict
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from labelmesh.stack import SERVICES
from schemas.topics import TOPIC_SPECS
from tests.deploy.catalogue import (
    GRPC_PORT, NON_SETTINGS_ENV, ROOT, SETTINGS, build_runtime, default_port, deploycheck, env_names, kustomize,
)

K8S = ROOT / "deploy/k8s"
# Kubernetes versions the core objects must be valid for (schemas shipped in the kubernetes-validate wheel).
KUBERNETES_VERSIONS = ("1.30.0", "1.33.0")
# Custom resources: not in Kubernetes' schemas. The Prometheus Operator's are decoded strictly into its Go types
# (deploy/check); Strimzi's are validated against its CRD schemas (test_strimzi.py), the tests below check
# their content.
CUSTOM_KINDS = {"KafkaTopic", "Kafka", "KafkaNodePool", "ServiceMonitor", "PrometheusRule"}
# Which topics each scalable stage consumes in its main consumer group (its replicas split their partitions).
CONSUMES = {"prelabeler": "item.ingested", "router": "item.prelabeled"}
OVERLAYS = ("dev", "prod", "prod+gpu")
# Keyed by item id: a service reading several of them in one group owns the same partition numbers of each
# (Kafka's range assignor), which needs equal partition counts. project.configured and model.updated are keyed
# by project and read by every replica.
ITEM_KEYED = {"item.ingested", "item.prelabeled", "item.routed", "label.submitted", "label.finalized", "qc.flagged"}


def _build(path: Path) -> list[dict]:
    result = subprocess.run([kustomize(), "build", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@functools.cache
def render(overlay: str) -> tuple[dict, ...]:
    if overlay.startswith("prod+"):
        # An opt-in component on top of prod, as the prod overlay would enable it (kustomize wants relative paths).
        import tempfile

        prod = yaml.safe_load((K8S / "overlays/prod/kustomization.yaml").read_text())

        tmp = Path(tempfile.mkdtemp(prefix="kustomize-"))
        rel = lambda p: os.path.relpath(p, tmp)  # noqa: E731
        (tmp / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": prod["namespace"],
            "resources": [rel(K8S / "overlays/prod")], "components": [rel(K8S / "components" / overlay.removeprefix("prod+"))],
        }))
        return tuple(_build(tmp))
    return tuple(_build(K8S / "overlays" / overlay))


def objects(overlay: str, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in render(overlay) if o["kind"] == kind}


def deployment(overlay: str, service: str) -> dict:
    return objects(overlay, "Deployment")[f"labelmesh-{service}"]


def container(overlay: str, service: str) -> dict:
    (c,) = deployment(overlay, service)["spec"]["template"]["spec"]["containers"]
    return c


def _labels_match(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_objects_are_valid_kubernetes(overlay: str) -> None:
    checked = 0
    for obj in render(overlay):
        if obj["kind"] in CUSTOM_KINDS:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {version}: {exc}")
        checked += 1
    assert checked >= 15


def _operator_check(manifests: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([deploycheck(), "crd"], input=manifests, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_operator_objects_decode_strictly_into_the_operators_types(overlay: str) -> None:
    result = _operator_check(yaml.safe_dump_all(render(overlay)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "2 checked, 0 failed"


def test_the_operator_type_check_rejects_a_misspelt_field() -> None:
    (monitor,) = objects("prod", "ServiceMonitor").values()
    broken = yaml.safe_load(yaml.safe_dump(monitor))
    broken["spec"]["endpoints"][0]["honourLabels"] = True
    result = _operator_check(yaml.safe_dump(broken))
    assert result.returncode == 1 and 'unknown field "honourLabels"' in result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespace_and_image(overlay: str) -> None:
    namespace = {"dev": "labelmesh-dev"}.get(overlay, "labelmesh")
    namespaced = [o for o in render(overlay) if o["kind"] not in {"Namespace"}]
    assert {o["metadata"].get("namespace") for o in namespaced} == {namespace}
    images = {container(overlay, s)["image"] for s in SERVICES}
    assert len(images) == 1, "one image for every service"
    assert images.pop().endswith(":dev" if overlay == "dev" else ":0.1.0")


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_deployment_runs_the_service_with_probes_on_its_health_endpoints(overlay: str, service: str) -> None:
    c = container(overlay, service)
    assert c["args"] == ["run", service]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["http"] == default_port(service)
    if service == "gateway":
        assert ports["grpc"] == GRPC_PORT
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    # /ready pings MongoDB and the broker with 3 s timeouts each.
    assert c["readinessProbe"]["timeoutSeconds"] > 6
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][bound]), f"{service}: {bound} incomplete"


@pytest.mark.parametrize("service", SERVICES)
def test_probed_endpoints_exist_in_the_service(service: str) -> None:
    """The paths the probes hit are the routes the service's HTTP app serves."""
    runtime = build_runtime(service)
    routes = {path for path, _ in runtime.asgi.routes}
    assert {"/health", "/ready", "/metrics"} <= routes


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_pods_run_as_non_root_without_privileges(overlay: str, service: str) -> None:
    pod = deployment(overlay, service)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    sc = container(overlay, service)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]


def _environment(overlay: str, service: str) -> dict[str, str]:
    """The container's environment as the kubelet would assemble it (ConfigMap, then env; Secret refs resolved
    from the rendered Secret, or a placeholder when the Secret is made out of band)."""
    c = container(overlay, service)
    env: dict[str, str] = {}
    configmaps = objects(overlay, "ConfigMap")
    secrets = objects(overlay, "Secret")
    for source in c.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            secret = secrets.get(ref["name"])
            if secret is None:
                env[var["name"]] = "mongodb://out-of-band/" if "mongo" in ref["key"] else "out-of-band"
            else:
                import base64

                env[var["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    return env


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_every_environment_variable_is_a_setting_the_service_reads(overlay: str, service: str) -> None:
    own = env_names(SETTINGS[service])
    other_services = set().union(*(env_names(SETTINGS[s]) for s in SERVICES if s != service))
    for name in _environment(overlay, service):
        if name in NON_SETTINGS_ENV or name in own:
            continue
        # A shared ConfigMap may carry another service's settings; those it ignores. Nothing else is allowed.
        assert name in other_services, f"{service}: {name} is read by no service"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_settings_parse_and_listen_where_probes_and_services_look(
    overlay: str, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("LABELMESH_"):
            monkeypatch.delenv(name)
    for name, value in _environment(overlay, service).items():
        monkeypatch.setenv(name, value)
    settings = SETTINGS[service]()
    assert settings.http_host == "0.0.0.0"
    assert settings.http_port == default_port(service)
    assert settings.kafka_bootstrap == "labelmesh-kafka-bootstrap:9092"  # the Strimzi cluster named labelmesh
    assert settings.mongo_uri.startswith(("mongodb://", "mongodb+srv://"))
    if service == "gateway":
        assert settings.grpc_host == "0.0.0.0" and settings.grpc_port == GRPC_PORT


def test_secret_in_dev_and_out_of_band_in_prod() -> None:
    (dev,) = objects("dev", "Secret").values()
    assert set(dev["data"]) == {"mongo-uri", "gateway-admin-token", "gateway-golden-salt"}
    assert objects("prod", "Secret") == {}
    refs = {v["valueFrom"]["secretKeyRef"]["name"] for s in SERVICES for v in container("prod", s)["env"]
            if "valueFrom" in v}
    assert refs == {"labelmesh-secrets"}, "prod documents this one name for the Secret made out of band"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_secret_settings_come_from_the_secret_and_nothing_else_does(overlay: str, service: str) -> None:
    """Every SecretStr setting (and the MongoDB URI, which carries credentials) is set from the Secret, never
    from the ConfigMap or a literal; nothing else is read from the Secret."""
    from pydantic import SecretStr

    settings = SETTINGS[service]
    secret_fields = {n for n, f in settings.model_fields.items() if f.annotation in (SecretStr, SecretStr | None)}
    prefix = settings.model_config["env_prefix"]
    wanted = {f"{prefix}{n}".upper() for n in secret_fields} | {"LABELMESH_MONGO_URI"}
    c = container(overlay, service)
    from_secret = {v["name"] for v in c["env"] if "secretKeyRef" in v.get("valueFrom", {})}
    assert from_secret == wanted
    configmap_keys = set().union(*(objects(overlay, "ConfigMap")[s["configMapRef"]["name"]]["data"]
                                   for s in c["envFrom"]))
    assert not wanted & configmap_keys


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_their_pods_and_expose_the_ports(overlay: str) -> None:
    services = objects(overlay, "Service")
    for name in SERVICES:
        svc = services[f"labelmesh-{name}"]
        pod_labels = deployment(overlay, name)["spec"]["template"]["metadata"]["labels"]
        assert _labels_match(svc["spec"]["selector"], pod_labels)
        # No other labelmesh Deployment matches the selector.
        others = [s for s in SERVICES if s != name]
        assert not any(_labels_match(svc["spec"]["selector"],
                                     deployment(overlay, s)["spec"]["template"]["metadata"]["labels"]) for s in others)
        ports = {p["name"]: p for p in svc["spec"]["ports"]}
        assert ports["http"]["port"] == default_port(name) and ports["http"]["targetPort"] == "http"
    assert services["labelmesh-gateway"]["spec"]["ports"][1]["port"] == GRPC_PORT


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_monitor_scrapes_every_service_with_the_labels_the_rules_use(overlay: str) -> None:
    (monitor,) = objects(overlay, "ServiceMonitor").values()
    selected = [s for s in objects(overlay, "Service").values()
                if _labels_match(monitor["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
    assert {s["metadata"]["name"] for s in selected} == {f"labelmesh-{s}" for s in SERVICES}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics" and endpoint["honorLabels"] is True
    # job="labelmesh" (value of the jobLabel label) and service=<component>, as in the compose Prometheus.
    assert all(s["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "labelmesh" for s in selected)
    (relabel,) = endpoint["relabelings"]
    assert relabel == {"sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_component"],
                       "targetLabel": "service"}
    assert {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in selected} == set(SERVICES)


def test_prometheus_rule_is_the_rules_file() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("sync_k8s", ROOT / "deploy/prometheus/sync_k8s.py")
    sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sync)
    assert (ROOT / "deploy/k8s/base/prometheusrule.yaml").read_text() == sync.render(), (
        "stale: run python deploy/prometheus/sync_k8s.py")
    (rule,) = objects("prod", "PrometheusRule").values()
    assert rule["spec"] == yaml.safe_load((ROOT / "deploy/prometheus/rules/labelmesh.yml").read_text())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_kafka_topic_for_every_topic_the_code_declares(overlay: str) -> None:
    topics = {t["spec"]["topicName"]: t for t in objects(overlay, "KafkaTopic").values()}
    assert set(topics) == {s.name for s in TOPIC_SPECS}
    for spec in TOPIC_SPECS:
        topic = topics[spec.name]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "labelmesh"
        assert topic["spec"]["partitions"] >= spec.partitions
        assert {k: str(v) for k, v in topic["spec"]["config"].items()}.items() >= dict(spec.config).items()
        replicas = topic["spec"]["replicas"]
        assert 1 <= int(topic["spec"]["config"]["min.insync.replicas"]) <= replicas
        assert replicas == (1 if overlay == "dev" else 3)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_cover_every_service_and_never_block_a_drain(overlay: str) -> None:
    budgets = objects(overlay, "PodDisruptionBudget")
    autoscalers = objects(overlay, "HorizontalPodAutoscaler")
    covered = defaultdict(int)
    for pdb in budgets.values():
        for s in SERVICES:
            labels = deployment(overlay, s)["spec"]["template"]["metadata"]["labels"]
            if _labels_match(pdb["spec"]["selector"]["matchLabels"], labels):
                covered[s] += 1
                hpa = autoscalers.get(f"labelmesh-{s}")
                replicas = hpa["spec"]["minReplicas"] if hpa else deployment(overlay, s)["spec"]["replicas"]
                if "minAvailable" in pdb["spec"]:
                    assert pdb["spec"]["minAvailable"] < replicas, f"{s}: the budget would block every eviction"
                else:
                    assert pdb["spec"]["maxUnavailable"] >= 1
    assert dict(covered) == {s: 1 for s in SERVICES}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_but_the_trainer_runs_replicas_that_roll_out_safely(overlay: str) -> None:
    """Two or more replicas of each consumer group; the trainer alone, replaced only after it stopped."""
    autoscalers = objects(overlay, "HorizontalPodAutoscaler")
    for s in SERVICES:
        spec = deployment(overlay, s)["spec"]
        hpa = autoscalers.get(f"labelmesh-{s}")
        replicas = hpa["spec"]["minReplicas"] if hpa else spec["replicas"]
        if s == "trainer":
            assert replicas == 1 and hpa is None and spec["strategy"] == {"type": "Recreate"}
            continue
        assert replicas >= 2, f"{s} runs {replicas} replica(s)"
        # The new pod is ready (broker and database reachable) before an old one is stopped.
        assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
        assert container(overlay, s)["readinessProbe"]["httpGet"]["path"] == "/ready"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_item_keyed_topics_share_one_partition_count(overlay: str) -> None:
    partitions = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in objects(overlay, "KafkaTopic").values()}
    assert ITEM_KEYED <= set(partitions)
    assert len({partitions[t] for t in ITEM_KEYED}) == 1, {t: partitions[t] for t in ITEM_KEYED}


def test_prod_autoscales_prelabeler_and_router_within_their_partitions() -> None:
    autoscalers = objects("prod", "HorizontalPodAutoscaler")
    assert set(autoscalers) == {"labelmesh-prelabeler", "labelmesh-router"}
    partitions = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in objects("prod", "KafkaTopic").values()}
    for service, topic in CONSUMES.items():
        hpa = autoscalers[f"labelmesh-{service}"]
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": f"labelmesh-{service}"}
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= partitions[topic]
        assert "replicas" not in deployment("prod", service)["spec"], "the autoscaler owns the count"


def test_gpu_puts_the_prelabeler_and_nothing_else_on_one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    c = container("prod+gpu", "prelabeler")
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
        deployment("prod+gpu", "prelabeler")["spec"]["template"]["spec"]["tolerations"])
    for name in list(os.environ):
        if name.startswith("LABELMESH_"):
            monkeypatch.delenv(name)
    for name, value in _environment("prod+gpu", "prelabeler").items():
        monkeypatch.setenv(name, value)
    settings = SETTINGS["prelabeler"]()
    assert settings.device == "cuda" and settings.fp16 is False  # the container's env wins over the ConfigMap's cpu
    assert _environment("prod", "prelabeler")["LABELMESH_PRELABELER_DEVICE"] == "cpu"
    for service in SERVICES:
        if service != "prelabeler":
            assert container("prod+gpu", service) == container("prod", service)
