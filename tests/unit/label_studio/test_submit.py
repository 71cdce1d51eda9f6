"""labelmesh.label_studio.submit's decisions, with a stand-in for the gateway client (the e2e test has the real one):
what is submitted, what the ledger already holds, skips, edits, and users who may not label a task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from labelmesh.label_studio import mapping
from labelmesh.label_studio.config import BridgeConfig, MappedUser
from labelmesh.label_studio.ledger import Ledger
from labelmesh.label_studio.submit import Submitter
from schemas.rpc import gateway_pb2 as pb


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def submit(self, task_id: str, label: str, key: str, time_spent_ms: int = 0) -> pb.SubmitLabelResponse:
        self.calls.append(("submit", task_id, label, key))
        return pb.SubmitLabelResponse(submission_id=f"s-{key}")

    async def skip(self, task_id: str, reason: str = "") -> None:
        self.calls.append(("skip", task_id))

    async def flag(self, project: str, comment: str, item_id: str = "") -> str:
        self.calls.append(("flag", item_id, comment))
        return "f1"


@pytest.fixture
async def submitter(tmp_path: Path) -> Submitter:
    # async: grpc.aio makes its channel on the running loop, and a sync fixture has none once an
    # earlier test has closed the default one
    config = BridgeConfig(project="p", label_studio_url="http://ls", ls_project_id=1, users=[
        MappedUser(email="a@x.io", ls_user_id=2, annotator="alice", token="ta"),
        MappedUser(email="b@x.io", ls_user_id=3, annotator="bob", token="tb")])
    made = Submitter(config, grpc.aio.insecure_channel("127.0.0.1:1"), Ledger(tmp_path / "ledger.sqlite"))
    made.clients = {"alice": FakeClient(), "bob": FakeClient()}
    return made


def _annotation(label: str | None = "pos", user: int = 2, **extra: Any) -> tuple[dict, dict]:
    task = pb.Task(task_id="t1", project="p", item_id="i1", text="x")
    result = [{"from_name": "label", "type": "choices", "value": {"choices": [label]}}] if label else []
    return {"id": 5, "completed_by": user, "result": result, **extra}, {"id": 9, "data": mapping.task_data(task, "alice")}


async def test_an_annotation_is_submitted_once_however_often_it_arrives(submitter: Submitter) -> None:
    assert (await submitter.annotation(*_annotation())).status == "submitted"
    assert (await submitter.annotation(*_annotation())).status == "duplicate"
    assert submitter.clients["alice"].calls == [("submit", "t1", "pos", "label-studio-annotation-5")]
    assert submitter.ledger.get(5).submission_id == "s-label-studio-annotation-5"


async def test_an_edited_label_is_flagged_once_and_never_replaces_the_submitted_one(submitter: Submitter) -> None:
    await submitter.annotation(*_annotation())
    outcome = await submitter.annotation(*_annotation("neg"))
    assert outcome.status == "flagged" and "from 'pos' to 'neg'" in outcome.detail["message"]
    assert (await submitter.annotation(*_annotation("neg"))).status == "duplicate"
    assert [c[0] for c in submitter.clients["alice"].calls] == ["submit", "flag"]
    assert submitter.ledger.get(5).label == "pos"


async def test_a_skip_is_sent_once(submitter: Submitter) -> None:
    assert (await submitter.annotation(*_annotation(None, was_cancelled=True))).status == "skipped"
    assert (await submitter.annotation(*_annotation(None, was_cancelled=True))).status == "duplicate"
    assert submitter.clients["alice"].calls == [("skip", "t1")]


@pytest.mark.parametrize(("user", "code", "says"), [
    (3, 403, "leased to 'alice'"), (4, 403, "not mapped"),
])
async def test_someone_else_may_not_answer_a_lease(submitter: Submitter, user: int, code: int, says: str) -> None:
    outcome = await submitter.annotation(*_annotation(user=user))
    assert (outcome.status, outcome.code) == ("refused", code) and says in outcome.detail["message"]
    assert submitter.clients["alice"].calls == submitter.clients["bob"].calls == []
    assert submitter.ledger.get(5) is None


async def test_an_annotation_without_a_label_is_refused_with_the_reason(submitter: Submitter) -> None:
    outcome = await submitter.annotation(*_annotation(None))
    assert (outcome.status, outcome.code) == ("refused", 422) and "exactly one label" in outcome.detail["message"]
