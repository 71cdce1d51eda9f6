"""The bridge's ledger: one record per Label Studio annotation, first submission wins, deletions and edits once."""

from __future__ import annotations

from pathlib import Path

from labelmesh.label_studio.ledger import Ledger, Submitted


def test_the_first_submission_wins_and_deletions_and_edits_count_once(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    assert ledger.get(1) is None
    ledger.record(Submitted(1, "p", "i1", "t1", "alice", "pos", "s1", False))
    ledger.record(Submitted(1, "p", "i1", "t1", "alice", "neg", "s2", False))
    assert ledger.get(1) == Submitted(1, "p", "i1", "t1", "alice", "pos", "s1", False)
    assert ledger.mark_changed(1, "neg") and not ledger.mark_changed(1, "neg")
    assert ledger.mark_deleted(1) and not ledger.mark_deleted(1)
    assert ledger.get(1).deleted
    ledger.close()
    # A second process (the sync beside the backend) sees the same records.
    again = Ledger(tmp_path / "ledger.sqlite")
    assert again.get(1).label == "pos"
    again.close()
