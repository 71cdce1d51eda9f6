"""Choosing a calibration session's items and annotators (services/gateway/domain/calibration.py)."""

from __future__ import annotations

import pytest

from services.gateway.domain.calibration import (
    Annotator,
    CalibrationError,
    check_item_request,
    pick_annotators,
    pick_items,
    session_id,
)

TEAM = {a.annotator_id: a for a in (Annotator("ann-1", "annotator"), Annotator("ann-2", "annotator"),
                                    Annotator("ann-3", "annotator", suspended=True), Annotator("exp", "expert"),
                                    Annotator("boss", "admin"))}


def _code(call, *args) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(CalibrationError) as info:
        call(*args)
    assert str(info.value)
    return info.value.code


def test_item_request_needs_exactly_one_of_ids_and_n() -> None:
    check_item_request(["a", "b"], 0)
    check_item_request([], 50)
    assert _code(check_item_request, ["a"], 3) == "invalid"
    assert _code(check_item_request, [], 0) == "invalid"
    assert _code(check_item_request, [], -1) == "invalid"
    assert _code(check_item_request, [], 501) == "invalid"
    assert _code(check_item_request, ["a", "a"], 0) == "invalid"
    assert _code(check_item_request, ["a", ""], 0) == "invalid"


def test_picked_items_are_a_sample_fixed_by_the_session() -> None:
    candidates = [f"i{n}" for n in range(100)]
    first = pick_items(candidates, 10, "cal-1")
    assert len(set(first)) == 10 and set(first) <= set(candidates)
    assert pick_items(list(reversed(candidates)), 10, "cal-1") == first, "candidate order does not matter"
    assert pick_items(candidates, 10, "cal-2") != first
    assert _code(pick_items, candidates[:3], 4, "cal-1") == "precondition"


def test_everyone_active_with_the_annotator_role_by_default() -> None:
    assert pick_annotators(TEAM, []) == ("ann-1", "ann-2")
    assert pick_annotators(TEAM, ["exp", "ann-1"]) == ("exp", "ann-1")


def test_named_annotators_must_exist_be_active_and_label() -> None:
    assert _code(pick_annotators, TEAM, ["ann-1", "nobody"]) == "not_found"
    assert _code(pick_annotators, TEAM, ["ann-1", "ann-3"]) == "precondition"
    assert _code(pick_annotators, TEAM, ["ann-1", "boss"]) == "invalid"
    assert _code(pick_annotators, TEAM, ["ann-1", "ann-1"]) == "invalid"
    assert _code(pick_annotators, TEAM, ["ann-1"]) == "precondition"
    assert _code(pick_annotators, {"a": Annotator("a", "annotator")}, []) == "precondition"


def test_session_ids_are_the_clients_when_valid() -> None:
    assert session_id("week-1.cal") == "week-1.cal"
    assert session_id("").startswith("cal-") and session_id("") != session_id("")
    assert _code(session_id, "no spaces") == "invalid"
    assert _code(session_id, "x" * 65) == "invalid"
