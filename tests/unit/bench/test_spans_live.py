"""bench/spans_live.py's own measures: span edits against what a task showed, and its goal against offline."""

from __future__ import annotations

from bench.spans_live import GOAL_F1_GAP, goal, span_edits, spans_of
from schemas.spans import Span

ANA, LIMA = Span(start=0, end=3, label="person"), Span(start=12, end=16, label="location")


def test_span_edits_count_spans_added_or_removed_against_what_was_shown() -> None:
    assert span_edits((ANA, LIMA), (ANA, LIMA)) == 0, "accepting the pre-label edits nothing"
    assert span_edits((), (ANA,)) == 1 and span_edits((ANA,), ()) == 1
    assert span_edits((ANA,), (ANA.model_copy(update={"label": "group"}),)) == 2, "a retype removes and adds"
    assert spans_of([{"start": 12, "end": 16, "label": "location", "confidence": 0.4}, {"start": 0, "end": 3,
                                                                                      "label": "person"}]) == (ANA, LIMA)


def test_the_goal_is_landing_where_the_offline_simulation_of_the_same_items_does() -> None:
    summary = {"all_items": {"final_f1": 0.90, "human_labels_per_item": 1.5},
               "auto_within_target_at_every_checkpoint": True}
    near = {"summary": {"final_f1": 0.90 - GOAL_F1_GAP / 2, "human_labels_per_item": 1.45}}
    far = {"summary": {"final_f1": 0.90 - 2 * GOAL_F1_GAP, "human_labels_per_item": 1.5}}
    assert goal(summary, near)["met"] and not goal(summary, far)["met"]
    assert not goal({**summary, "auto_within_target_at_every_checkpoint": False}, near)["met"]
