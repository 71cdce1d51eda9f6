"""Pure parts of `labelmesh events` and `labelmesh replay`: times, record description, filters, digests."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from labelmesh.replay import select_dead_letters
from labelmesh.state_digest import diff_documents, digest_documents
from labelmesh.streams import ALL_TOPICS, EventFilter, check_topics, describe, parse_time, to_ms
from schemas.events import DeadLetter, ItemIngested, TextPayload

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def _ingested(project: str = "p1", item: str = "i1") -> bytes:
    return ItemIngested(producer="t", project=project, item_id=item, payload=TextPayload(text="x")).model_dump_json().encode()


def test_parse_time_accepts_iso_unix_ms_and_ages() -> None:
    assert parse_time("2026-11-28T08:00:00Z") == datetime(2026, 11, 28, 8, tzinfo=UTC)
    assert parse_time("2026-11-28T08:00:00") == datetime(2026, 11, 28, 8, tzinfo=UTC), "naive means UTC"
    assert parse_time("2026-11-28T10:00:00+02:00") == datetime(2026, 11, 28, 8, tzinfo=UTC)
    assert parse_time(str(to_ms(NOW))) == NOW
    assert parse_time("15m", NOW) == NOW - timedelta(minutes=15)
    assert parse_time("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_time("1.5d", NOW) == NOW - timedelta(hours=36)
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday-ish")


def test_describe_an_event_a_poison_record_and_a_dead_letter() -> None:
    line = describe("t1.item.ingested", 2, 41, to_ms(NOW), b"i1", _ingested(), prefix="t1.")
    assert line.doc["topic"] == "item.ingested" and line.doc["partition"] == 2 and line.doc["offset"] == 41
    assert line.doc["event"]["item_id"] == "i1" and line.doc["key"] == "i1"
    assert (line.project, line.item_id, line.type) == ("p1", "i1", "item.ingested")
    assert line.doc["timestamp"] == "2026-11-28T09:00:00.000+00:00"

    poison = describe("item.ingested", 0, 1, to_ms(NOW), None, b"\xff not json")
    assert base64.b64decode(poison.doc["raw_b64"]) == b"\xff not json" and "event" not in poison.doc
    assert (poison.project, poison.item_id, poison.type) == (None, None, None)

    letter = DeadLetter(consumer="ns.qc", topic="t1.item.ingested", partition=0, offset=7, key="i9",
                        reason="unknown project", original_b64=base64.b64encode(_ingested("p2", "i9")).decode())
    dead = describe("t1.deadletter", 1, 3, to_ms(NOW), b"i9", letter.model_dump_json().encode(), prefix="t1.")
    assert dead.doc["event"]["reason"] == "unknown project"
    assert dead.doc["original"]["item_id"] == "i9", "a dead letter shows its decoded original"
    assert (dead.project, dead.item_id, dead.type) == ("p2", "i9", "item.ingested"), "filters see the original"

    garbled = DeadLetter(consumer="ns.qc", topic="t1.item.ingested", partition=0, offset=8, key=None,
                         reason="undecodable", original_b64=base64.b64encode(b"{oops").decode())
    shown = describe("t1.deadletter", 0, 4, to_ms(NOW), None, garbled.model_dump_json().encode(), prefix="t1.")
    assert shown.doc["original_text"] == "{oops" and shown.project is None


def test_filter_by_project_item_type_and_time() -> None:
    line = describe("item.ingested", 0, 0, to_ms(NOW), b"i1", _ingested("p1", "i1"))
    assert EventFilter().matches(line)
    assert EventFilter(projects=frozenset({"p1", "p9"})).matches(line)
    assert not EventFilter(projects=frozenset({"p2"})).matches(line)
    assert EventFilter(item_ids=frozenset({"i1"})).matches(line)
    assert not EventFilter(item_ids=frozenset({"i2"})).matches(line)
    assert EventFilter(types=frozenset({"item.ingested"})).matches(line)
    assert not EventFilter(types=frozenset({"label.submitted"})).matches(line)
    assert EventFilter(since_ms=to_ms(NOW)).matches(line), "since is inclusive"
    assert not EventFilter(since_ms=to_ms(NOW) + 1).matches(line)
    assert not EventFilter(until_ms=to_ms(NOW)).matches(line), "until is exclusive"
    assert EventFilter(until_ms=to_ms(NOW) + 1).matches(line)
    assert not EventFilter(projects=frozenset({"p1"}), types=frozenset({"qc.flagged"})).matches(line), "all must hold"


def test_topics_are_checked() -> None:
    assert check_topics([]) == list(ALL_TOPICS) and "deadletter" in ALL_TOPICS
    assert check_topics(["all"]) == list(ALL_TOPICS)
    assert check_topics(["deadletter", "item.routed", "deadletter"]) == ["deadletter", "item.routed"]
    with pytest.raises(ValueError, match="unknown topic"):
        check_topics(["item.ingestd"])


def test_digest_ignores_order_processing_times_and_generated_ids_but_not_content() -> None:
    a = [{"_id": "p/1", "final": {"label": "x", "at": NOW}, "votes": [1, 2]}, {"_id": ObjectId(), "n": 1.5}]
    b = [{"_id": ObjectId(), "n": 1.5}, {"final": {"at": NOW + timedelta(hours=1), "label": "x"}, "votes": [1, 2],
                                          "_id": "p/1"}]
    assert digest_documents({"items": a}) == digest_documents({"items": b})
    changed = [{"_id": "p/1", "final": {"label": "y", "at": NOW}, "votes": [1, 2]}, {"_id": ObjectId(), "n": 1.5}]
    assert digest_documents({"items": a}) != digest_documents({"items": changed})
    reordered_votes = [{"_id": "p/1", "final": {"label": "x", "at": NOW}, "votes": [2, 1]}, {"_id": ObjectId(), "n": 1.5}]
    assert digest_documents({"items": a}) != digest_documents({"items": reordered_votes}), "array order is state"
    missing_time = [{"_id": "p/1", "final": {"label": "x"}, "votes": [1, 2]}, {"_id": ObjectId(), "n": 1.5}]
    assert digest_documents({"items": a}) != digest_documents({"items": missing_time}), "a volatile field still counts"
    assert json.dumps(digest_documents({"b": [], "a": []})) == json.dumps(digest_documents({"a": [], "b": []}))


def test_dead_letters_selected_by_consumer_topic_time_and_once_per_original() -> None:
    def letter(consumer: str, topic: str, offset: int, at: datetime) -> DeadLetter:
        return DeadLetter(consumer=consumer, topic=topic, partition=0, offset=offset, key="k", reason="r",
                          original_b64="", occurred_at=at)

    letters = [
        letter("ns.qc", "ns.label.submitted", 1, NOW),
        letter("ns.router", "ns.label.finalized", 2, NOW),
        letter("ns.trainer", "ns.label.finalized", 2, NOW),  # the same original failed in two consumers
        letter("ns.qc", "ns.label.submitted", 3, NOW - timedelta(days=1)),
    ]
    assert [d.offset for d in select_dead_letters(letters)] == [1, 2, 3]
    assert [d.offset for d in select_dead_letters(letters, consumer="ns.qc")] == [1, 3]
    assert [d.offset for d in select_dead_letters(letters, topic="ns.label.finalized")] == [2]
    assert [d.offset for d in select_dead_letters(letters, since=NOW - timedelta(hours=1))] == [1, 2]


def test_diff_names_changed_fields_and_documents_on_one_side_only() -> None:
    before = {"items": [{"_id": "p/1", "final": {"label": "x", "at": NOW}, "n": 1}, {"_id": "p/2", "n": 2}],
              "flags": [{"_id": ObjectId(), "kind": "drift"}], "same": [{"_id": 1}]}
    after = {"items": [{"_id": "p/1", "final": {"label": "y", "at": NOW + timedelta(hours=1)}, "n": 1},
                       {"_id": "p/3", "n": 3}],
             "flags": [{"_id": ObjectId(), "kind": "drift"}], "same": [{"_id": 1}]}
    diff = diff_documents(before, after)
    assert set(diff) == {"items"}, "equal collections (generated ids and processing times aside) are left out"
    items = diff["items"]
    assert (items["changed"], items["only_before"], items["only_after"]) == (1, 1, 1)
    assert items["examples"] == {'"p/1"': {"final": {"before": {"at": "<volatile>", "label": "x"},
                                                     "after": {"at": "<volatile>", "label": "y"}}}}
    assert items["only_before_ids"] == ['"p/2"'] and items["only_after_ids"] == ['"p/3"']
    assert diff_documents(after, after) == {}
