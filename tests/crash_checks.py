"""What a crash or replica run must show at its end, shared by the e2e tests that drive bench/crash_recovery.py."""

from __future__ import annotations

from typing import Any


def assert_survived(result: dict[str, Any], faults: list[str]) -> None:
    """Every fault happened and the pipeline produced after each; nothing was lost; every process ended cleanly."""
    assert [f["action"] for f in result["faults"]] == faults
    stalled = [f["action"] for f in result["faults"] if f["first_final_after_s"] is None]
    assert not stalled, f"no final label came after: {stalled}"
    invariants = result["invariants"]
    assert invariants["items_ingested"] >= 100, "items kept coming in while the faults happened"
    assert invariants["submissions_acknowledged"] > 0, "people labelled during the faults"
    assert result["broken"] == [], result["broken"]
    # Every process, those scaled in or rolled out included, ended by a graceful SIGTERM.
    assert all(code == 0 for code in result["service_exit_codes"].values()), result["service_exit_codes"]
