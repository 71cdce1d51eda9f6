"""The gateway's request rules (services/gateway/domain/): what each RPC refuses, and the events it produces."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from schemas.events import FlagSubject, ItemIngested
from schemas.keys import item_key
from schemas.topics import max_message_bytes
from services.gateway.auth import ALL_PROJECTS, Role
from services.gateway.domain.calibration import CalibrationError, check_existing, check_named_items
from services.gateway.domain.annotators import MEMBERSHIPS_MAX, credentials
from services.gateway.domain.bounds import COMMENT_MAX_CHARS, ID_MAX, RECORD_OVERHEAD_BYTES, check_fit
from services.gateway.domain.feedback import check_comment, feedback_flag
from services.gateway.domain.ingest import (
    NewItem,
    check_batch,
    check_item,
    conflict,
    conflicts,
    content_digest,
    event_digest,
    ingested_event,
)
from services.gateway.domain.projects import (
    DEFAULT_MULTI_ANNOTATORS,
    DEFAULT_TARGET_AUTO_ERROR,
    check_guidelines,
    configured,
    republished,
    wants_current,
)
from services.gateway.domain.refusals import Refused
from services.gateway.domain.submissions import (
    check_holder,
    check_retry,
    check_submission,
    submission_id,
    submitted,
)
from services.gateway.domain.golden import golden_turn, should_inject_golden

LABELS = {"yes", "no"}


def refusal(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(Refused) as info:
        call(*args, **kwargs)
    return info.value.code, str(info.value)


def _item(**fields: Any) -> NewItem:
    return NewItem(**{"project": "p", "item_id": "i1", "text": "some text", **fields})


def test_a_batch_needs_items_and_only_a_stream_may_pass_the_cap() -> None:
    assert refusal(check_batch, 0, 10, False) == ("invalid", "no items given")
    assert refusal(check_batch, 11, 10, False) == (
        "exhausted", "11 items in one request; at most 10 (use IngestStream for large imports)")
    check_batch(11, 10, True)
    check_batch(10, 10, False)


@pytest.mark.parametrize(("fields", "why"), [
    ({"item_id": ""}, f"item_id must be 1..{ID_MAX} characters"),
    ({"item_id": "x" * (ID_MAX + 1)}, f"item_id must be 1..{ID_MAX} characters"),
    ({"text": "  "}, "text is empty"),
    ({"text": "x" * 101}, "text is longer than 100 characters"),
    ({"dataset": "d" * 257}, "source and dataset are at most 256 characters"),
    ({"golden_label": "maybe"}, "golden_label 'maybe' is not in the project's labels"),
    ({"trusted_label": "maybe"}, "trusted_label 'maybe' is not in the project's labels"),
    ({"golden_label": "yes", "trusted_label": "no"}, "an item is golden or trusted, not both"),
    ({"metadata": {f"k{n}": "v" for n in range(65)}}, "metadata: at most 64 keys of 256 and values of 4000 characters"),
])
def test_an_item_that_cannot_be_ingested_names_itself_and_why(fields: dict[str, Any], why: str) -> None:
    item = _item(**fields)
    assert refusal(check_item, 3, item, LABELS, set(), 100, True) == (
        "invalid", f"item 3 ({item.item_id!r}): {why}; nothing was ingested")


def test_an_id_twice_in_one_request_is_refused_and_golden_answers_need_an_admin() -> None:
    check_item(0, _item(), LABELS, {("q", "i1")}, 100, True)  # the same id in another project is another item
    assert refusal(check_item, 1, _item(), LABELS, {("p", "i1")}, 100, True)[1] == (
        "item 1 ('i1'): item_id appears twice in this request; nothing was ingested")
    assert refusal(check_item, 0, _item(golden_label="yes"), LABELS, set(), 100, False) == (
        "forbidden", "item 0 ('i1'): golden/trusted labels need the admin role")
    check_item(0, _item(golden_label="yes"), LABELS, set(), 100, True)


def test_an_ingested_event_is_the_same_for_the_same_content_and_fills_defaults() -> None:
    event = ingested_event(_item(golden_label="yes"))
    assert (event.source, event.dataset, event.golden_label, event.trusted_label) == ("api", "default", "yes", None)
    assert ingested_event(_item(golden_label="yes")).event_id == event.event_id
    assert ingested_event(_item(golden_label="no")).event_id != event.event_id
    assert event_digest(event) == content_digest("some text", "yes", None) != content_digest("some text", None, "yes")


def test_only_an_id_stored_with_other_content_conflicts() -> None:
    same, other, new = (ingested_event(_item(item_id=i)) for i in ("a", "b", "c"))
    stored = {item_key("p", "a"): event_digest(same), item_key("p", "b"): content_digest("else", None, None)}
    assert conflicts([same, other, new], stored) == ["b"]
    assert conflict(["b"], "nothing was ingested").args == (
        "1 item_id(s) exist with other text or labels (ingest them under new ids): b; nothing was ingested",)


def test_an_event_too_big_for_its_topic_is_refused_before_anything_is_stored() -> None:
    room = max_message_bytes(ItemIngested.TOPIC) - RECORD_OVERHEAD_BYTES
    small, big = ingested_event(_item()), ingested_event(_item(text="x" * room))
    check_fit([small], "item")
    code, message = refusal(check_fit, [small, big], "item")
    assert code == "invalid" and message.startswith("item 1: its item.ingested event is ")
    assert refusal(check_fit, [big], "project")[1].startswith("project: ")


def test_a_configuration_gets_the_next_version_only_when_it_changes() -> None:
    first = configured("p", ["a", "b"], "g", 0, 0.0, None)
    assert (first.guideline_version, first.multi_annotators, first.target_auto_error) == (
        1, DEFAULT_MULTI_ANNOTATORS, DEFAULT_TARGET_AUTO_ERROR)
    current = {"labels": ["a", "b"], "guidelines": "g", "guideline_version": 4}
    assert configured("p", ["a", "b"], "g", 5, 0.1, current).guideline_version == 4
    assert configured("p", ["a", "b"], "g2", 0, 0.0, current).guideline_version == 5
    assert configured("p", ["a", "b", "c"], "g", 0, 0.0, current).guideline_version == 5


@pytest.mark.parametrize(("labels", "multi", "target", "why"), [
    (["a"], 0, 0.0, "a project needs at least two labels"),
    (["a", "a"], 0, 0.0, "labels must be distinct and non-empty"),
    (["a", " "], 0, 0.0, "labels must be distinct and non-empty"),
    (["a", "b"], 10, 0.0, "multi_annotators must be between 2 and 9"),
    (["a", "b"], 0, 1.5, "target_auto_error must be in (0, 1)"),
])
def test_a_configuration_the_rules_refuse(labels: list[str], multi: int, target: float, why: str) -> None:
    assert refusal(configured, "p", labels, "", multi, target, None) == ("invalid", why)


def test_a_configuration_the_contract_refuses_says_so() -> None:
    code, message = refusal(configured, "", ["a", "b"], "", 0, 0.0, None)
    assert code == "invalid" and message.startswith("invalid project: ")


def test_new_guidelines_keep_labels_and_settings_and_the_same_text_is_no_new_version() -> None:
    current = {"labels": ["a", "b"], "guidelines": "old", "guideline_version": 2, "multi_annotators": 5,
               "target_auto_error": 0.05}
    event = republished("p", current, "new")
    assert event is not None
    assert (event.guideline_version, event.labels, event.multi_annotators, event.target_auto_error) == (
        3, ("a", "b"), 5, 0.05)
    assert republished("p", current, "old") is None
    assert refusal(check_guidelines, " ") == ("invalid", "text is required")
    assert wants_current(0, 3) and wants_current(3, 3) and not wants_current(2, 3)
    assert refusal(wants_current, -1, 3) == ("invalid", "version must be positive, or 0 for the current one")


def test_credentials_default_to_the_annotator_role_and_need_projects_unless_admin() -> None:
    assert credentials("ann", "", ["q", "p", "q"], 0, 1_000.0) == (Role.ANNOTATOR, ["p", "q"])
    assert credentials("boss", "admin", [], 2_000, 1_000.0) == (Role.ADMIN, [])
    assert refusal(credentials, "admin", "", ["p"], 0, 0.0)[1] == "annotator_id must be 1..128 characters, not 'admin'"
    assert refusal(credentials, "ann", "king", ["p"], 0, 0.0)[1] == "unknown role 'king'"
    assert refusal(credentials, "ann", "expert", [], 0, 0.0)[1] == (
        f"projects: name the projects the annotator works in, or {ALL_PROJECTS!r} for all")
    too_many = [f"p{n}" for n in range(MEMBERSHIPS_MAX + 1)]
    assert refusal(credentials, "ann", "", too_many, 0, 0.0)[1] == (
        f"projects: at most {MEMBERSHIPS_MAX} names of 1..{ID_MAX} characters")
    assert refusal(credentials, "ann", "", ["p"], 1_000, 1_000.0)[1] == "expires_unix_ms is in the past"


LEASE = {"_id": "lease-1", "project": "p", "item_id": "i1", "task_id": "t1", "annotator": "ann",
         "guideline_version": 2, "golden": True}


def test_a_submission_keeps_the_guideline_version_its_task_showed() -> None:
    check_submission("k", 0)
    assert refusal(check_submission, "", 0)[1] == "idempotency_key must be 1..128 characters"
    assert refusal(check_submission, "k", -1)[1] == "time_spent_ms must not be negative"
    sub = submission_id("ann", "k")
    event = submitted(sub, LEASE, "ann", Role.ANNOTATOR, "yes", 5, "k", LABELS, 7)
    assert (event.guideline_version, event.golden, event.role, event.item_id) == (2, True, "annotator", "i1")
    assert submitted(sub, {**LEASE, "guideline_version": None}, "ann", Role.ANNOTATOR, "yes", 5, "k", LABELS,
                     7).guideline_version == 7
    assert submitted(sub, LEASE, "ann", Role.ANNOTATOR, "no", 9, "k", LABELS, 7).event_id == event.event_id
    assert refusal(submitted, sub, LEASE, "ann", Role.ANNOTATOR, "maybe", 5, "k", LABELS, 7) == (
        "invalid", "label 'maybe' is not in project 'p''s labels")


def test_a_used_key_is_a_retry_only_for_the_same_task_and_label_and_leases_have_one_holder() -> None:
    previous = {"lease_id": "lease-1", "label": "yes"}
    check_retry(previous, "lease-1", "yes")
    assert refusal(check_retry, previous, "lease-1", "no") == (
        "exists", "idempotency_key was already used for a different submission")
    assert refusal(check_retry, previous, "lease-2", "yes")[0] == "exists"
    check_holder(LEASE, "ann")
    assert refusal(check_holder, LEASE, "other") == ("forbidden", "this task is leased to someone else")


def test_feedback_goes_on_the_item_or_else_the_guidelines() -> None:
    on_item = feedback_flag("p", "i1", "x" * (COMMENT_MAX_CHARS + 5), "ann")
    assert (on_item.subject, on_item.subject_id, len(on_item.message)) == (FlagSubject.ITEM, "i1", COMMENT_MAX_CHARS)
    on_guidelines = feedback_flag("p", "", "unclear", "ann")
    assert (on_guidelines.subject, on_guidelines.subject_id, on_guidelines.item_id) == (
        FlagSubject.GUIDELINES, "p", None)
    assert on_guidelines.evidence == {"annotator": "ann"}
    assert refusal(check_comment, "  ") == ("invalid", "comment is required")


def test_a_calibration_session_again_and_its_named_items() -> None:
    asked = {"item_ids": ["a"], "n": 0, "annotators": []}
    existing = {"_id": "s", "project": "p", "request": asked}
    check_existing(existing, "p", asked)
    with pytest.raises(CalibrationError) as info:
        check_existing(existing, "q", asked)
    assert (info.value.code, str(info.value)) == ("exists", "session 's' exists with other settings")
    check_named_items(["a", "b"], {"a": False, "b": False})
    assert refusal(check_named_items, ["a", "b", "c"], {"a": False}) == ("not_found", "unknown items: b, c")
    assert refusal(check_named_items, ["a", "b"], {"b": True, "a": True}) == (
        "invalid", "golden items cannot be calibration items: a, b")


def test_the_golden_turn_uses_the_settled_rate_after_the_warm_up() -> None:
    turns = [golden_turn("ann", n, 1.0, 0.0, 10, "salt") for n in range(20)]
    assert turns == [True] * 10 + [False] * 10
    assert all(golden_turn("ann", n, 0.3, 0.3, 0, "s") == should_inject_golden("ann", n, 0.3, "s") for n in range(50))
