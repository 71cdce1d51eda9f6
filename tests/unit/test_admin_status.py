"""`labelmesh status`'s table from a ProjectStats: every figure the issue lists, and the ETA from the final rate."""

from __future__ import annotations

from rich.console import Console

from labelmesh.admin_cli import stats_table
from schemas.rpc import gateway_pb2 as pb


def _render(stats: pb.ProjectStats) -> str:
    console = Console(record=True, width=160)
    console.print(stats_table(stats, cost_per_label=0.25, now_ms=0))
    return " ".join(console.export_text().replace("│", " ").split())  # the cells, one space apart


def test_the_table_shows_progress_cost_quality_and_an_eta() -> None:
    stats = pb.ProjectStats(project="p", ingested=100, golden_items=5, prelabelled=80,
                            routed={"auto": 50, "single": 30, "multi": 10}, open_items=20, final=60,
                            final_by_provenance={"auto": 50, "consensus": 10}, human_labels=40, golden_answered=8,
                            golden_correct=6, multi_labelled=10, unanimous=7, first_final_unix_ms=1_000,
                            last_final_unix_ms=31_000)
    text = _render(stats)
    for row in ("ingested  100 (5 golden)", "routed  auto 50, multi 10, single 30",
                "pre-labelled  80 (10 routed with no model yet)", "waiting for people  20",
                "final  60 (auto 50, consensus 10)", "human labels spent  40", "cost  10.00 (at 0.25 per label)",
                "golden accuracy  75.0% of 8", "unanimous multi-labelled items  70.0% of 10",
                "ETA  ~20 s at 2.00 final/s"):
        assert " ".join(row.split()) in text, (row, text)


def test_the_eta_says_done_or_nothing_before_it_can_tell() -> None:
    done = _render(pb.ProjectStats(project="p", ingested=3, final=3))
    assert "ETA done" in done and "()" not in done, done
    text = _render(pb.ProjectStats(project="p", ingested=3, final=1))
    assert "ETA -" in text and "golden accuracy -" in text
