"""How the local stack reads replica counts and names and numbers its instances (no process is started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelmesh.stack import DEFAULT_PORTS, REPLICA_PORT_STEP, Stack, instance_name, replica_counts


def test_one_replica_each_by_default() -> None:
    assert replica_counts({}) == {"gateway": 1, "prelabeler": 1, "router": 1, "qc": 1, "trainer": 1}


def test_a_shared_count_with_per_service_overrides_and_the_trainer_alone() -> None:
    counts = replica_counts({"LABELMESH_REPLICAS": "2", "LABELMESH_ROUTER_REPLICAS": "3"})
    assert counts == {"gateway": 2, "prelabeler": 2, "router": 3, "qc": 2, "trainer": 1}


@pytest.mark.parametrize("env", [{"LABELMESH_TRAINER_REPLICAS": "2"}, {"LABELMESH_QC_REPLICAS": "0"}])
def test_impossible_counts_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        replica_counts(env)


def test_instances_get_their_own_ports(tmp_path: Path) -> None:
    stack = Stack(env={"LABELMESH_REPLICAS": "2"}, log_dir=tmp_path, port_offset=7, grpc_port=50100)
    assert sorted(stack.processes) == sorted(
        [instance_name(s, n) for s in ("gateway", "prelabeler", "router", "qc") for n in (0, 1)] + ["trainer"])
    assert stack.processes["router-1"].port == DEFAULT_PORTS["router"] + 7 + REPLICA_PORT_STEP
    assert [p.grpc_port for p in stack.instances("gateway")] == [50100, 50101]
    assert stack.environ("qc-1")["LABELMESH_QC_HTTP_PORT"] == str(stack.processes["qc-1"].port)
    assert len({p.port for p in stack.processes.values()}) == len(stack.processes)
