"""Labels: what SubmitLabel and SkipTask accept, and the label.submitted a submission becomes."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from schemas.events import LabelSubmitted, derived_id
from schemas.spans import SPANS_LABEL, Span, TaskType
from services.gateway.auth import Role
from services.gateway.domain import SERVICE
from services.gateway.domain.bounds import COMMENT_MAX_CHARS
from services.gateway.domain.refusals import Refused

IDEMPOTENCY_KEY_MAX = 128


def check_submission(idempotency_key: str, time_spent_ms: int) -> None:
    if not idempotency_key or len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
        raise Refused("invalid", f"idempotency_key must be 1..{IDEMPOTENCY_KEY_MAX} characters")
    if time_spent_ms < 0:
        raise Refused("invalid", "time_spent_ms must not be negative")


def submission_id(annotator_id: str, idempotency_key: str) -> str:
    """One annotator's submission under one idempotency key (the `_id` of its document)."""
    return f"{annotator_id}/{idempotency_key}"


def check_retry(previous: Mapping[str, Any], task_id: str, label: str, spans: str = "[]") -> None:
    """A submission under a used key is a retry of the first one only if it names the same task and label (and
    the same spans: answer_key)."""
    if previous["lease_id"] != task_id or previous["label"] != label or previous.get("spans", "[]") != spans:
        raise Refused("exists", "idempotency_key was already used for a different submission")


def check_answer_kind(task: TaskType, label: str, n_spans: int) -> None:
    """A spans project is answered with spans (none: no entity in the text), a classification project with a label."""
    if task is TaskType.SPANS and label:
        raise Refused("invalid", "this is a spans project: send the entities in `spans` and leave `label` empty")
    if task is TaskType.CLASSIFICATION and n_spans:
        raise Refused("invalid", "this is a classification project: send `label`, not `spans`")


def check_task_id(task_id: str) -> None:
    if not task_id:
        raise Refused("invalid", "task_id is required")


def check_holder(lease: Mapping[str, Any], annotator_id: str) -> None:
    if lease["annotator"] != annotator_id:
        raise Refused("forbidden", "this task is leased to someone else")


def check_skip_reason(reason: str) -> None:
    if len(reason) > COMMENT_MAX_CHARS:
        raise Refused("invalid", f"reason is longer than {COMMENT_MAX_CHARS} characters")


def submitted(sub_id: str, lease: Mapping[str, Any], annotator_id: str, role: Role, label: str, time_spent_ms: int,
              idempotency_key: str, labels: Collection[str], guideline_version: int,
              spans: tuple[Span, ...] | None = None) -> LabelSubmitted:
    """The label.submitted of a submission on a lease; Refused when the label is not one of the project's.
    `spans`: a spans project's validated answer (its event carries SPANS_LABEL as the label).

    guideline_version is the project's current one, used only for leases stored without the version they showed.
    """
    if spans is not None:
        label = SPANS_LABEL
    elif label not in labels:
        raise Refused("invalid", f"label {label!r} is not in project {lease['project']!r}'s labels")
    return LabelSubmitted(
        event_id=derived_id("submitted", sub_id),
        producer=SERVICE, project=lease["project"], item_id=lease["item_id"], task_id=lease["task_id"],
        annotator_id=annotator_id, role=role.value, label=label,
        # The version shown with the task, not one published while the annotator was working on it.
        time_spent_ms=time_spent_ms,
        guideline_version=lease.get("guideline_version") or guideline_version,
        idempotency_key=idempotency_key, golden=bool(lease.get("golden")),
        session_id=lease.get("session"), spans=spans,
    )
