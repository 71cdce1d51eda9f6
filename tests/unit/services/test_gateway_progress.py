"""Folding events into an item's progress (services/gateway/domain/progress.py) and the read side's field checks."""

from __future__ import annotations

from collections import defaultdict

from schemas.events import LabelFinalized, Provenance, Tier
from services.gateway.domain.progress import apply_event
from services.gateway.domain.reads import PAGE_MAX, export_problems, id_problem, page_problems
from tests.qc_events import ingest, label, route


def _final(version: int, provenance: Provenance = Provenance.CONSENSUS) -> LabelFinalized:
    return LabelFinalized(producer="test", project="p", item_id="i", label="a", version=version, provenance=provenance,
                          confidence=0.9, human_labels=2, expert_labels=0, verified=True)


def test_each_state_change_counts_once_and_a_redelivery_counts_nothing() -> None:
    doc: dict = {"_id": "p/i"}
    counts: defaultdict[str, int] = defaultdict(int)
    stream = [ingest("p", "i", golden_label="a"), route("p", "i", Tier.MULTI, 2), label("p", "i", "x", "a", golden=True),
              label("p", "i", "y", "a"), _final(1)]
    assert [apply_event(doc, e, counts) for e in stream] == [True] * 5
    assert [apply_event(doc, e, counts) for e in stream] == [False] * 5, "the same events again change nothing"
    assert dict(counts) == {"ingested": 1, "golden_items": 1, "prelabelled": 1, "routed.multi": 1, "open_items": 0,
                            "human_labels": 2,
                            "golden_answered": 1, "golden_correct": 1, "final": 1,
                            "final_by_provenance.consensus": 1, "multi_labelled": 1, "unanimous": 1}
    assert apply_event(doc, _final(2), counts) and doc["final"]["version"] == 2 and counts["final"] == 1


def test_an_auto_item_is_never_open_and_a_calibration_label_is_no_vote() -> None:
    doc: dict = {}
    counts: defaultdict[str, int] = defaultdict(int)
    assert apply_event(doc, route("p", "i", Tier.AUTO, 0), counts) and counts["open_items"] == 0
    calibration = label("p", "i", "x", "a").model_copy(update={"session_id": "cal-1"})
    assert not apply_event(doc, calibration, counts) and "labels" not in doc
    assert apply_event(doc, _final(1, Provenance.AUTO), counts) and counts["open_items"] == 0


def test_a_cold_start_item_counts_as_pre_labelled_when_the_first_model_routes_it_again() -> None:
    doc: dict = {}
    counts: defaultdict[str, int] = defaultdict(int)
    cold = route("p", "i", Tier.MULTI, 3).model_copy(update={"model_version": None, "top_k": ()})
    assert apply_event(doc, cold, counts) and counts["prelabelled"] == 0 and counts["routed.multi"] == 1
    again = route("p", "i", Tier.SINGLE, 1)  # model v1 arrived: pre-labelled, routed again
    assert apply_event(doc, again, counts) and counts["prelabelled"] == 1
    assert counts["routed.multi"] == 1 and "routed.single" not in counts, "routed counts each item once, at first"
    assert not apply_event(doc, again, counts) and counts["prelabelled"] == 1


def test_read_side_fields_are_checked_together() -> None:
    assert id_problem("project", "") == [("project", "is required")]
    assert id_problem("page_token", "", required=False) == []
    assert page_problems(PAGE_MAX + 1, "t" * 300) == [("page_size", f"must be 0..{PAGE_MAX} (0 for {PAGE_MAX})"),
                                                      ("page_token", "must be at most 256 characters")]
    assert export_problems("p", "12", 0) == []
    assert [field for field, _ in export_problems("", "x1", -1)] == ["project", "cursor", "limit"]
