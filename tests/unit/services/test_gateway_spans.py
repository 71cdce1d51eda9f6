"""The gateway's rules for spans projects: task types, golden spans at ingest, and what SubmitLabel accepts."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from schemas.spans import SPANS_LABEL, Span, TaskType, answer_key
from services.gateway.auth import Role
from services.gateway.domain.ingest import NewItem, check_item, content_digest, ingested_event
from services.gateway.domain.progress import apply_event
from services.gateway.domain.projects import configured, republished, task_of
from services.gateway.domain.refusals import Refused
from services.gateway.domain.submissions import check_answer_kind, check_retry, submitted

TYPES = ["person", "location"]
TEXT = "Ana flew to Lima"
ANA, LIMA = Span(start=0, end=3, label="person"), Span(start=12, end=16, label="location")


def test_a_project_is_classification_unless_configured_as_spans_and_keeps_its_task_type() -> None:
    assert configured("p", TYPES, "", 0, 0, None).task is TaskType.CLASSIFICATION
    spans = configured("p", TYPES, "", 0, 0, None, "spans")
    assert spans.task is TaskType.SPANS
    stored = {"labels": TYPES, "guidelines": "", "guideline_version": 1, "multi_annotators": 3,
              "target_auto_error": 0.02, "task": "spans"}
    assert republished("p", stored, "new text").task is TaskType.SPANS
    assert task_of({"labels": TYPES}) is TaskType.CLASSIFICATION, "projects stored before task types"
    with pytest.raises(Refused) as info:
        configured("p", TYPES, "", 0, 0, None, "boxes")
    assert info.value.code == "invalid" and "boxes" in str(info.value)
    with pytest.raises(Refused) as info:
        configured("p", TYPES, "", 0, 0, stored, "")
    assert info.value.code == "precondition" and "cannot change" in str(info.value)


def _check(item: NewItem, task: TaskType, admin: bool = True) -> NewItem:
    return check_item(0, item, set(TYPES), set(), 1000, admin, task)


def test_golden_spans_are_checked_against_the_text_and_sorted() -> None:
    item = _check(NewItem("p", "i", TEXT, golden_spans=(LIMA, ANA)), TaskType.SPANS)
    assert item.golden_spans == (ANA, LIMA)
    assert ingested_event(item).golden_spans == (ANA, LIMA)
    for bad, fragment in [((Span(start=10, end=20, label="location"),), "outside the text"),
                          ((ANA, Span(start=1, end=5, label="person")), "overlap"),
                          ((Span(start=0, end=3, label="org"),), "entity types")]:
        with pytest.raises(Refused, match=fragment) as info:
            _check(NewItem("p", "i", TEXT, golden_spans=bad), TaskType.SPANS)
        assert info.value.code == "invalid"


def test_each_task_type_refuses_the_other_kind_of_answer() -> None:
    with pytest.raises(Refused, match="golden_spans are for spans projects"):
        _check(NewItem("p", "i", TEXT, golden_spans=(ANA,)), TaskType.CLASSIFICATION)
    with pytest.raises(Refused, match="not golden_label or trusted_label"):
        _check(NewItem("p", "i", TEXT, golden_label="person"), TaskType.SPANS)
    with pytest.raises(Refused) as info:
        _check(NewItem("p", "i", TEXT, golden_spans=(ANA,)), TaskType.SPANS, admin=False)
    assert info.value.code == "forbidden"
    check_answer_kind(TaskType.SPANS, "", 0)  # no entity in the text is an answer
    check_answer_kind(TaskType.CLASSIFICATION, "person", 0)
    with pytest.raises(Refused, match="leave `label` empty"):
        check_answer_kind(TaskType.SPANS, "person", 1)
    with pytest.raises(Refused, match="not `spans`"):
        check_answer_kind(TaskType.CLASSIFICATION, "person", 1)


def test_an_item_without_spans_digests_as_before_and_golden_spans_change_the_digest() -> None:
    assert content_digest("t", "a", None) == hashlib.sha256("t\x00a\x00".encode()).hexdigest()
    assert content_digest("t", "a", None, ()) == content_digest("t", "a", None)
    assert content_digest(TEXT, None, None, (ANA,)) != content_digest(TEXT, None, None, (LIMA,))
    assert content_digest(TEXT, None, None, (ANA,)) == content_digest(TEXT, None, None, [ANA.model_dump()])


def test_a_spans_submission_carries_its_spans_and_a_retry_must_repeat_them() -> None:
    lease = {"project": "p", "item_id": "i", "task_id": "t", "golden": False}
    event = submitted("a/k", lease, "a", Role.ANNOTATOR, "", 10, "k", TYPES, 1, (ANA,))
    assert event.label == SPANS_LABEL and event.spans == (ANA,)
    previous = {"lease_id": "L", "label": "", "spans": answer_key([ANA])}
    check_retry(previous, "L", "", answer_key([ANA.model_copy(update={"confidence": 0.3})]))
    with pytest.raises(Refused):
        check_retry(previous, "L", "", answer_key([ANA.model_copy(update={"label": "location"})]))
    check_retry({"lease_id": "L", "label": "yes"}, "L", "yes", answer_key([]))  # a classification submission as before


def test_golden_span_answers_count_correct_only_when_every_span_matches() -> None:
    doc: dict = {}
    counts: Counter = Counter()
    golden = ingested_event(_check(NewItem("p", "g", TEXT, golden_spans=(ANA, LIMA)), TaskType.SPANS))
    apply_event(doc, golden, counts)
    lease = {"project": "p", "item_id": "g", "task_id": "t", "golden": True}
    apply_event(doc, submitted("a/k", lease, "a", Role.ANNOTATOR, "", 1, "k", TYPES, 1, (ANA, LIMA)), counts)
    apply_event(doc, submitted("b/k", lease, "b", Role.ANNOTATOR, "", 1, "k", TYPES, 1, (ANA,)), counts)
    assert (counts["golden_items"], counts["golden_answered"], counts["golden_correct"]) == (1, 2, 1)
