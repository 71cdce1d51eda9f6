"""Issue #19's replica test: every service but the trainer at two processes, under load, through what Kubernetes
does to them (a replica killed, a rolling restart of every service, prelabeler and router scaled 1 -> 3 -> 1),
then every invariant of the crash run, task slots included.

It brings up a Kafka broker and a FerretDB of its own (bench/crash_recovery.py's), like test_crash_recovery.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.crash_recovery import REPLICA_FAULTS, run
from tests.crash_checks import assert_survived

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(1800)
async def test_two_replicas_of_every_service_survive_kills_rollouts_and_scaling(tmp_path: Path) -> None:
    result = await run(tmp_path / "replicas", max_items=2000, rate=2.0, faults=REPLICA_FAULTS, settle_timeout=600,
                       replicas=2)

    assert_survived(result, REPLICA_FAULTS)
