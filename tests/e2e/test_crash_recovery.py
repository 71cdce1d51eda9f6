"""Issue #7's crash tests, smaller than bench/crash_recovery.py's default run: every fault, then every invariant.

The run brings up a Kafka broker and a FerretDB of its own (other ports, a temporary data directory), so
restarting them leaves the suite's shared infrastructure alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.crash_recovery import FAULTS, run
from tests.crash_checks import assert_survived

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(1500)
async def test_nothing_is_lost_when_services_broker_and_database_die_mid_stream(tmp_path: Path) -> None:
    result = await run(tmp_path / "crash", max_items=2000, rate=2.0, faults=FAULTS, settle_timeout=600)

    assert_survived(result, FAULTS)
