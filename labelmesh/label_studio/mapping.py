"""Pure translations between labelmesh's messages and Label Studio's JSON (no I/O; tests/unit/label_studio)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import quoteattr

from schemas.rpc import gateway_pb2 as pb

FROM_NAME = "label"
TO_NAME = "text"
# Label Studio's names for the webhook actions the backend acts on. Label Studio sends ANNOTATIONS_DELETED (plural,
# ids only) when annotations are deleted; ANNOTATION_DELETED is accepted as the same thing.
CREATED, UPDATED = "ANNOTATION_CREATED", "ANNOTATION_UPDATED"
DELETED = ("ANNOTATIONS_DELETED", "ANNOTATION_DELETED")
MAX_LABELS = 1000


class BadAnnotation(ValueError):
    """An annotation labelmesh cannot take: the message says why."""


def label_config(labels: list[str]) -> str:
    """A text-classification labelling interface with one choice per label, named as mapping expects."""
    if not labels or len(labels) > MAX_LABELS:
        raise ValueError(f"a project needs 1..{MAX_LABELS} labels, got {len(labels)}")
    choices = "\n".join(f"    <Choice value={quoteattr(label)}/>" for label in labels)
    return (f'<View>\n  <Text name="{TO_NAME}" value="$text"/>\n'
            f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInLine="true">\n'
            f"{choices}\n  </Choices>\n</View>\n")


def model_version_name(version: int) -> str:
    return f"labelmesh-v{version}" if version else "labelmesh-no-model"


def task_data(task: pb.Task, annotator: str) -> dict[str, Any]:
    """A Label Studio task's `data` for one labelmesh lease: the text, and what the backend needs to answer for it
    (the lease, its holder, labelmesh's pre-label and the model version that made it)."""
    return {
        "text": task.text,
        "labelmesh_project": task.project,
        "labelmesh_item_id": task.item_id,
        "labelmesh_task_id": task.task_id,
        "labelmesh_annotator": annotator,
        "labelmesh_tier": task.tier,
        "labelmesh_prelabel": json.dumps([[p.label, round(p.probability, 6)] for p in task.prelabel]),
        "labelmesh_model_version": task.model_version,
        "labelmesh_lease_expires_unix_ms": task.lease_expires_unix_ms,
    }


def prediction(data: dict[str, Any]) -> dict[str, Any] | None:
    """labelmesh's pre-label as a Label Studio prediction (top label, its calibrated probability as the score), or
    None when the item has no pre-label (no model yet: people label it from scratch)."""
    ranked = json.loads(data.get("labelmesh_prelabel") or "[]")
    if not ranked:
        return None
    label, probability = max(ranked, key=lambda pair: pair[1])
    return {
        "model_version": model_version_name(int(data.get("labelmesh_model_version") or 0)),
        "score": float(probability),
        "result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": [label]}}],
    }


def import_row(task: pb.Task, annotator: str) -> dict[str, Any]:
    """One task for Label Studio's import API, with the pre-label as its prediction."""
    data = task_data(task, annotator)
    pred = prediction(data)
    return {"data": data, "predictions": [pred] if pred else []}


@dataclass(frozen=True)
class Annotation:
    """What an ANNOTATION_CREATED/UPDATED webhook says, reduced to what SubmitLabel needs."""

    annotation_id: int
    ls_user_id: int
    label: str
    task_id: str
    item_id: str
    project: str
    annotator: str
    time_spent_ms: int
    cancelled: bool


def annotation(payload: dict[str, Any]) -> Annotation:
    """Decode an annotation webhook; BadAnnotation says what is missing or wrong."""
    ann = payload.get("annotation")
    task = payload.get("task")
    if not isinstance(ann, dict) or not isinstance(task, dict):
        raise BadAnnotation("the webhook carries no annotation and task (is the webhook's send_payload on?)")
    data = task.get("data") or {}
    missing = [k for k in ("labelmesh_task_id", "labelmesh_item_id", "labelmesh_project", "labelmesh_annotator")
               if not data.get(k)]
    if missing:
        raise BadAnnotation(f"task {task.get('id')} was not created by `labelmesh label-studio sync` "
                            f"(no {', '.join(missing)})")
    choices = [r.get("value", {}).get("choices") for r in ann.get("result") or []
               if r.get("from_name") == FROM_NAME and r.get("type") == "choices"]
    cancelled = bool(ann.get("was_cancelled"))
    picked = [c for group in choices if group for c in group]
    if not cancelled and len(picked) != 1:
        raise BadAnnotation(f"annotation {ann.get('id')} must choose exactly one label in '{FROM_NAME}', "
                            f"chose {picked or 'none'}")
    completed_by = ann.get("completed_by")
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("id")
    if not isinstance(completed_by, int) or not isinstance(ann.get("id"), int):
        raise BadAnnotation(f"annotation {ann.get('id')!r} has no id or completed_by user id")
    lead = ann.get("lead_time")
    return Annotation(
        annotation_id=ann["id"], ls_user_id=completed_by, label=picked[0] if picked else "",
        task_id=str(data["labelmesh_task_id"]), item_id=str(data["labelmesh_item_id"]),
        project=str(data["labelmesh_project"]), annotator=str(data["labelmesh_annotator"]),
        time_spent_ms=max(0, int(float(lead) * 1000)) if isinstance(lead, int | float) else 0,
        cancelled=cancelled,
    )


def deleted_ids(payload: dict[str, Any]) -> list[int]:
    """The annotation ids of an ANNOTATIONS_DELETED webhook (Label Studio sends ids only)."""
    found = payload.get("annotations")
    if found is None and isinstance(payload.get("annotation"), dict):
        found = [payload["annotation"]]
    if not isinstance(found, list):
        raise BadAnnotation("a deletion webhook without annotation ids")
    return [a["id"] for a in found if isinstance(a, dict) and isinstance(a.get("id"), int)]


def idempotency_key(annotation_id: int) -> str:
    """One labelmesh submission per Label Studio annotation: a redelivered or updated webhook reuses it."""
    return f"label-studio-annotation-{annotation_id}"
