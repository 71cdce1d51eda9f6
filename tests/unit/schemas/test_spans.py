import pytest

from schemas.events import ItemPrelabeled, LabelSubmitted, ProjectConfigured
from schemas.rpc import gateway_pb2 as pb
from schemas.spans import SPANS_LABEL, Span, SpanError, TaskType, span_errors, validate_spans
from services.gateway.spans import SPAN_ERROR_STATUS, spans_from_proto, spans_to_proto

TEXT = "Empire State Building = ESB ."
LABELS = ("location", "person")


def test_valid_spans_come_back_sorted():
    spans = [Span(start=24, end=27, label="location"), Span(start=0, end=21, label="location", confidence=0.7)]
    out = validate_spans(TEXT, spans, LABELS)
    assert [(s.start, s.end) for s in out] == [(0, 21), (24, 27)]
    assert TEXT[out[0].start : out[0].end] == "Empire State Building"


@pytest.mark.parametrize(
    "spans, fragment",
    [
        ([Span(start=0, end=6, label="location"), Span(start=3, end=12, label="person")], "overlap"),
        ([Span(start=24, end=40, label="location")], "outside the text"),
        ([Span(start=5, end=5, label="location")], "empty or reversed"),
        ([Span(start=0, end=6, label="product")], "not one of the project's entity types"),
    ],
)
def test_bad_spans_are_refused_with_the_reason(spans, fragment):
    assert any(fragment in e for e in span_errors(TEXT, spans, LABELS))
    with pytest.raises(SpanError, match=fragment):
        validate_spans(TEXT, spans, LABELS)


def test_touching_spans_do_not_overlap():
    assert span_errors(TEXT, [Span(start=0, end=6, label="location"), Span(start=6, end=12, label="location")]) == []


def test_proto_round_trip_and_refusal():
    msgs = [pb.Span(start=0, end=21, label="location", confidence=0.9)]
    spans = spans_from_proto(msgs, TEXT, LABELS)
    assert [(s.start, s.end, s.label) for s in spans] == [(0, 21, "location")]
    assert spans[0].confidence == pytest.approx(0.9)
    back = spans_to_proto(spans, pb.Span)
    assert (back[0].start, back[0].end, back[0].label) == (0, 21, "location")
    with pytest.raises(SpanError, match="overlap"):
        spans_from_proto([pb.Span(start=0, end=10, label="location"), pb.Span(start=5, end=12, label="person")], TEXT, LABELS)
    with pytest.raises(SpanError, match="outside"):
        spans_from_proto([pb.Span(start=0, end=99, label="location")], TEXT, LABELS)
    assert SPAN_ERROR_STATUS.name == "INVALID_ARGUMENT"


def test_events_default_to_classification_and_carry_spans():
    cfg = ProjectConfigured(producer="t", project="p", labels=("a", "b"), guideline_version=1)
    assert cfg.task is TaskType.CLASSIFICATION
    spans_cfg = ProjectConfigured(producer="t", project="p", labels=LABELS, guideline_version=1, task="spans")
    assert spans_cfg.task is TaskType.SPANS
    pre = ItemPrelabeled(producer="t", project="p", item_id="i", encoder="e",
                         spans=(Span(start=0, end=6, label="location", confidence=0.5),))
    assert ItemPrelabeled.model_validate_json(pre.model_dump_json()) == pre
    sub = LabelSubmitted(producer="t", project="p", item_id="i", task_id="t", annotator_id="a", label=SPANS_LABEL,
                         time_spent_ms=1, guideline_version=1, idempotency_key="k", spans=())
    assert sub.spans == ()
    old = ItemPrelabeled(producer="t", project="p", item_id="i", encoder="e")
    assert old.spans is None
