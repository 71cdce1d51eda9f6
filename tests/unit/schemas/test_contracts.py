"""The checked-in contracts match the code that produces them, and events round-trip through JSON."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas import jsonschema
from schemas.events import (
    EVENT_TYPES,
    ItemIngested,
    LabelSubmitted,
    QcFlagged,
    TextPayload,
    derived_id,
    parse_event,
)
from schemas.rpc.generate import generate

SCHEMAS = Path(jsonschema.__file__).parent


def test_json_schemas_are_current(tmp_path: Path) -> None:
    jsonschema.main(tmp_path)
    committed = sorted(p.name for p in (SCHEMAS / "json").glob("*.json"))
    assert committed == sorted(p.name for p in tmp_path.glob("*.json"))
    for name in committed:
        assert (tmp_path / name).read_text() == (SCHEMAS / "json" / name).read_text(), (
            f"{name} drifted from schemas/events.py: run python -m schemas.jsonschema"
        )


def test_grpc_stubs_are_current(tmp_path: Path) -> None:
    generate(tmp_path)
    for name in ("gateway_pb2.py", "gateway_pb2.pyi", "gateway_pb2_grpc.py"):
        assert filecmp.cmp(tmp_path / "schemas" / "rpc" / name, SCHEMAS / "rpc" / name, shallow=False), (
            f"{name} drifted from gateway.proto: run python -m schemas.rpc.generate"
        )


def test_every_event_type_has_its_own_topic() -> None:
    topics = [t.TOPIC for t in EVENT_TYPES]
    assert len(set(topics)) == len(topics)


def test_event_round_trips_and_keeps_its_type() -> None:
    event = ItemIngested(producer="gateway", project="banking", item_id="i-1", payload=TextPayload(text="hello"))
    parsed = parse_event(event.model_dump_json())
    assert parsed == event
    assert isinstance(parsed, ItemIngested)
    assert parsed.key == "i-1"


def test_unknown_fields_and_types_are_rejected() -> None:
    event = ItemIngested(producer="gateway", project="banking", item_id="i-1", payload=TextPayload(text="x"))
    raw = event.model_dump(mode="json")
    with pytest.raises(ValidationError):
        parse_event(ItemIngested.model_validate({**raw, "surprise": 1}).model_dump_json())
    with pytest.raises(ValidationError):
        parse_event(b'{"type": "item.exploded", "producer": "x", "project": "p"}')
    with pytest.raises(ValidationError):
        parse_event(b"not json")


def test_label_submitted_requires_an_idempotency_key() -> None:
    with pytest.raises(ValidationError):
        LabelSubmitted(producer="gateway", project="p", item_id="i", task_id="t", annotator_id="a", label="x",
                       time_spent_ms=1, guideline_version=1, idempotency_key="")


def test_flag_without_item_is_keyed_by_subject() -> None:
    flag = QcFlagged(producer="qc", project="p", subject="annotator", subject_id="ann-7", kind="drift", message="m")
    assert flag.key == "annotator:ann-7"


def test_derived_ids_are_deterministic_and_distinct() -> None:
    assert derived_id("a", "b") == derived_id("a", "b")
    assert derived_id("a", "b") != derived_id("a", "c")
