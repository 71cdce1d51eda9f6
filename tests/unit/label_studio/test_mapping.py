"""labelmesh.label_studio.mapping: labelmesh's tasks as Label Studio tasks and predictions, its annotations back."""

from __future__ import annotations

import pytest

from labelmesh.label_studio import mapping
from schemas.rpc import gateway_pb2 as pb


def _task(model_version: int = 3) -> pb.Task:
    return pb.Task(task_id="t1", project="p", item_id="i1", text="hello", tier="single", model_version=model_version,
                   prelabel=[pb.LabelProbability(label="neg", probability=0.3),
                             pb.LabelProbability(label="pos", probability=0.7)])


def test_a_task_imports_with_the_top_pre_label_as_its_prediction() -> None:
    row = mapping.import_row(_task(), "alice")
    assert row["data"]["text"] == "hello" and row["data"]["labelmesh_task_id"] == "t1"
    assert row["data"]["labelmesh_annotator"] == "alice"
    [prediction] = row["predictions"]
    assert prediction["model_version"] == "labelmesh-v3"
    assert prediction["score"] == pytest.approx(0.7)
    assert prediction["result"] == [{"from_name": "label", "to_name": "text", "type": "choices",
                                     "value": {"choices": ["pos"]}}]


def test_an_item_without_a_pre_label_has_no_prediction() -> None:
    task = pb.Task(task_id="t1", project="p", item_id="i1", text="hello")
    assert mapping.import_row(task, "alice")["predictions"] == []
    assert mapping.model_version_name(0) == "labelmesh-no-model"


def test_the_label_config_quotes_labels() -> None:
    config = mapping.label_config(["a \"quoted\" <label>", "b"])
    assert '<Choice value=\'a "quoted" &lt;label&gt;\'/>' in config
    assert '<Choices name="label" toName="text"' in config
    with pytest.raises(ValueError):
        mapping.label_config([])


def _payload(result: list | None = None, **annotation: object) -> dict:
    data = mapping.task_data(_task(), "alice")
    return {"task": {"id": 9, "data": data},
            "annotation": {"id": 5, "completed_by": 2, "lead_time": 1.5, "result": result if result is not None else
                           [{"from_name": "label", "type": "choices", "value": {"choices": ["pos"]}}], **annotation}}


def test_an_annotation_becomes_what_submit_label_needs() -> None:
    ann = mapping.annotation(_payload())
    assert (ann.annotation_id, ann.ls_user_id, ann.label, ann.task_id, ann.annotator) == (5, 2, "pos", "t1", "alice")
    assert ann.time_spent_ms == 1500 and not ann.cancelled
    assert mapping.annotation(_payload(completed_by={"id": 2})).ls_user_id == 2
    assert mapping.annotation(_payload(result=[], was_cancelled=True)).cancelled


@pytest.mark.parametrize(("payload", "says"), [
    ({"annotation": {"id": 5}}, "no annotation and task"),
    ({"annotation": {"id": 5}, "task": {"id": 9, "data": {"text": "x"}}}, "not created by `labelmesh label-studio"),
    (_payload(result=[]), "exactly one label"),
    (_payload(result=[{"from_name": "label", "type": "choices", "value": {"choices": ["pos", "neg"]}}]),
     "exactly one label"),
    (_payload(completed_by=None), "no id or completed_by"),
])
def test_an_annotation_labelmesh_cannot_take_says_why(payload: dict, says: str) -> None:
    with pytest.raises(mapping.BadAnnotation, match=says.replace("(", r"\(")):
        mapping.annotation(payload)


def test_deletion_webhooks_name_annotation_ids() -> None:
    assert mapping.deleted_ids({"annotations": [{"id": 1}, {"id": 2}, {"x": 3}]}) == [1, 2]
    assert mapping.deleted_ids({"annotation": {"id": 7}}) == [7]
    with pytest.raises(mapping.BadAnnotation):
        mapping.deleted_ids({})
    assert mapping.idempotency_key(7) == "label-studio-annotation-7"
