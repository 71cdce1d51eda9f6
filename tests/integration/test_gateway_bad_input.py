"""Bad input for every RPC of gateway.proto, as a table: missing token, wrong role, bad arguments, unknown ids and
expired leases each get their gRPC status with a message, and leave the gateway's database exactly as it was.

One gateway process serves the whole table (module_edge in conftest.py): project fz with items i1 and i2,
annotators ann, exp, sus (suspended) and out (a member of another project only), and ann's lease on i1 already expired. A case that wrongly wrote
something shows up as a changed digest in that case alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from schemas.rpc import gateway_pb2 as pb
from schemas.rpc import gateway_pb2_grpc as pb_grpc
from tests.gateway_helpers import EDGE_PROJECT as P
from tests.gateway_helpers import LABELS, Edge

pytestmark = pytest.mark.integration
S = grpc.StatusCode
KINDS = ("missing token", "wrong role", "bad argument", "unknown id", "expired lease", "state")
# Where a kind cannot happen, and why: the table must say so rather than leave a gap.
NOT_APPLICABLE = {
    ("ConfigureProject", "unknown id"): "creates or updates the project it names",
    ("CreateAnnotator", "unknown id"): "creates or replaces the annotator it names",
    ("ListProjects", "unknown id"): "names no project; a page token past the end gives an empty page",
    ("ListAnnotators", "unknown id"): "names no annotator; a page token past the end gives an empty page",
}
EXPIRED = "<ann's expired lease>"  # replaced by the lease id at run time


def _item(**fields: Any) -> pb.IngestItem:
    return pb.IngestItem(**{"project": P, "item_id": "new", "text": "a new text", **fields})


# rpc -> how to send a request to it
SEND: dict[str, Callable[[Edge, Any, Any], Any]] = {
    "IngestItems": lambda e, r, m: e.ingest.IngestItems(pb.IngestItemsRequest(items=r), metadata=m),
    "IngestStream": lambda e, r, m: e.ingest.IngestStream(iter(r), metadata=m),
    "LeaseTask": lambda e, r, m: e.annotation.LeaseTask(r, metadata=m),
    "SubmitLabel": lambda e, r, m: e.annotation.SubmitLabel(r, metadata=m),
    "SkipTask": lambda e, r, m: e.annotation.SkipTask(r, metadata=m),
    "FlagItem": lambda e, r, m: e.annotation.FlagItem(r, metadata=m),
    "GetGuidelines": lambda e, r, m: e.annotation.GetGuidelines(r, metadata=m),
    "ConfigureProject": lambda e, r, m: e.admin.ConfigureProject(r, metadata=m),
    "PublishGuidelines": lambda e, r, m: e.admin.PublishGuidelines(r, metadata=m),
    "CreateAnnotator": lambda e, r, m: e.admin.CreateAnnotator(r, metadata=m),
    "GetItemHistory": lambda e, r, m: e.admin.GetItemHistory(r, metadata=m),
    "CreateCalibrationSession": lambda e, r, m: e.admin.CreateCalibrationSession(r, metadata=m),
    **{name: (lambda name: lambda e, r, m: getattr(pb_grpc.ProjectServiceStub(e.channel), name)(r, metadata=m))(name)
       for name in ("ListProjects", "GetProject", "GetProjectStats", "GetItem", "ListAnnotators", "RevokeAnnotator",
                    "RotateAnnotatorToken")},
    "ExportFinalLabels": lambda e, r, m: list(pb_grpc.ProjectServiceStub(e.channel).ExportFinalLabels(r, metadata=m)),
}


@dataclass(frozen=True)
class Case:
    rpc: str
    kind: str
    why: str
    who: str  # a token name from the fixture, "none" for no metadata, or a literal token
    request: Any
    status: grpc.StatusCode

    @property
    def id(self) -> str:
        return f"{self.rpc}: {self.why}"


def _submit(task_id: str = EXPIRED, label: str = "yes", key: str = "k1", ms: int = 10) -> pb.SubmitLabelRequest:
    return pb.SubmitLabelRequest(task_id=task_id, label=label, idempotency_key=key, time_spent_ms=ms)


def _calibration(**fields: Any) -> pb.CreateCalibrationSessionRequest:
    return pb.CreateCalibrationSessionRequest(**{"project": P, "item_ids": ["i1", "i2"],
                                                 "annotators": ["ann", "exp"], **fields})


def _configure(**fields: Any) -> pb.ConfigureProjectRequest:
    return pb.ConfigureProjectRequest(**{"project": "other", "labels": LABELS, **fields})


C = Case
_READ = {  # the read API's rpcs: a good request, a bad one (and why), and one naming something unknown
    "ListProjects": (pb.ListProjectsRequest(), pb.ListProjectsRequest(page_size=10_000), "a page too big", None),
    "ListAnnotators": (pb.ListAnnotatorsRequest(), pb.ListAnnotatorsRequest(page_token="x" * 300),
                       "a page token too long", None),
    "GetProject": (pb.GetProjectRequest(project=P), pb.GetProjectRequest(), "no project",
                   pb.GetProjectRequest(project="nope")),
    "GetProjectStats": (pb.GetProjectRequest(project=P), pb.GetProjectRequest(project="p" * 300), "a project id too long",
                        pb.GetProjectRequest(project="nope")),
    "GetItem": (pb.GetItemRequest(project=P, item_id="i1"), pb.GetItemRequest(project=P), "no item id",
                pb.GetItemRequest(project=P, item_id="nope")),
    "RevokeAnnotator": (pb.RevokeAnnotatorRequest(annotator_id="ann"), pb.RevokeAnnotatorRequest(), "no annotator",
                        pb.RevokeAnnotatorRequest(annotator_id="nope")),
    "RotateAnnotatorToken": (pb.RevokeAnnotatorRequest(annotator_id="ann"), pb.RevokeAnnotatorRequest(
        annotator_id="a" * 300), "an annotator id too long", pb.RevokeAnnotatorRequest(annotator_id="nope")),
    "ExportFinalLabels": (pb.ExportFinalLabelsRequest(project=P), pb.ExportFinalLabelsRequest(project=P, cursor="x1"),
                          "a cursor that is not one", pb.ExportFinalLabelsRequest(project="nope")),
}
CASES = [
    *(case for rpc, (good, bad, why, unknown) in _READ.items() for case in [
        C(rpc, "missing token", "no metadata", "none", good, S.UNAUTHENTICATED),
        C(rpc, "wrong role", "an annotator", "ann", good, S.PERMISSION_DENIED),
        C(rpc, "bad argument", why, "admin", bad, S.INVALID_ARGUMENT),
        *([C(rpc, "unknown id", "unknown project, item or annotator", "admin", unknown, S.NOT_FOUND)]
          if unknown is not None else [])]),
    C("IngestItems", "missing token", "no metadata", "none", [_item()], S.UNAUTHENTICATED),
    C("IngestItems", "missing token", "a token nobody has", "forged", [_item()], S.UNAUTHENTICATED),
    C("IngestItems", "wrong role", "an annotator", "ann", [_item()], S.PERMISSION_DENIED),
    C("IngestItems", "wrong role", "golden label from an annotator", "ann", [_item(golden_label="yes")],
      S.PERMISSION_DENIED),
    C("IngestItems", "wrong role", "trusted label from an expert", "exp", [_item(trusted_label="no")],
      S.PERMISSION_DENIED),
    C("IngestItems", "bad argument", "no items", "admin", [], S.INVALID_ARGUMENT),
    C("IngestItems", "bad argument", "blank text", "admin", [_item(text="  ")], S.INVALID_ARGUMENT),
    C("IngestItems", "bad argument", "golden label outside the taxonomy", "admin", [_item(golden_label="purple")],
      S.INVALID_ARGUMENT),
    C("IngestItems", "bad argument", "a good item and a bad one", "admin", [_item(), _item(item_id="")],
      S.INVALID_ARGUMENT),
    C("IngestItems", "unknown id", "unknown project", "admin", [_item(project="nope")], S.NOT_FOUND),
    C("IngestItems", "state", "a stored id with other text", "admin", [_item(item_id="i1", text="changed")],
      S.ALREADY_EXISTS),
    C("IngestItems", "state", "a stored id with a golden label added", "admin",
      [_item(item_id="i1", text="text i1", golden_label="yes")], S.ALREADY_EXISTS),
    C("IngestItems", "state", "a new item beside a changed one", "admin",
      [_item(), _item(item_id="i2", text="changed")], S.ALREADY_EXISTS),
    C("IngestStream", "missing token", "no metadata", "none", [_item()], S.UNAUTHENTICATED),
    C("IngestStream", "wrong role", "golden label from an annotator", "ann", [_item(golden_label="yes")],
      S.PERMISSION_DENIED),
    C("IngestStream", "wrong role", "an annotator", "ann", [_item()], S.PERMISSION_DENIED),
    C("IngestStream", "bad argument", "empty stream", "admin", [], S.INVALID_ARGUMENT),
    C("IngestStream", "state", "a stored id with other text", "admin", [_item(item_id="i1", text="changed")],
      S.ALREADY_EXISTS),
    C("IngestStream", "bad argument", "the same item twice", "admin", [_item(), _item()], S.INVALID_ARGUMENT),
    C("IngestStream", "unknown id", "unknown project", "admin", [_item(project="nope")], S.NOT_FOUND),
    C("LeaseTask", "missing token", "no metadata", "none", pb.LeaseTaskRequest(project=P), S.UNAUTHENTICATED),
    C("LeaseTask", "wrong role", "an admin", "admin", pb.LeaseTaskRequest(project=P), S.PERMISSION_DENIED),
    C("LeaseTask", "wrong role", "a suspended annotator", "sus", pb.LeaseTaskRequest(project=P), S.PERMISSION_DENIED),
    C("LeaseTask", "wrong role", "not a member of the project", "out", pb.LeaseTaskRequest(project=P),
      S.PERMISSION_DENIED),
    C("LeaseTask", "wrong role", "not a member, of a project that does not exist", "out",
      pb.LeaseTaskRequest(project="nope"), S.PERMISSION_DENIED),
    C("LeaseTask", "bad argument", "no project", "ann", pb.LeaseTaskRequest(), S.INVALID_ARGUMENT),
    C("LeaseTask", "unknown id", "unknown project", "ann", pb.LeaseTaskRequest(project="nope"), S.NOT_FOUND),
    C("LeaseTask", "unknown id", "no task waiting for this expert", "exp", pb.LeaseTaskRequest(project=P),
      S.NOT_FOUND),
    C("SubmitLabel", "missing token", "no metadata", "none", _submit(), S.UNAUTHENTICATED),
    C("SubmitLabel", "wrong role", "an admin", "admin", _submit(), S.PERMISSION_DENIED),
    C("SubmitLabel", "wrong role", "someone else's task", "exp", _submit(), S.PERMISSION_DENIED),
    C("SubmitLabel", "wrong role", "a suspended annotator", "sus", _submit(), S.PERMISSION_DENIED),
    C("SubmitLabel", "bad argument", "no idempotency key", "ann", _submit(key=""), S.INVALID_ARGUMENT),
    C("SubmitLabel", "bad argument", "idempotency key too long", "ann", _submit(key="k" * 129), S.INVALID_ARGUMENT),
    C("SubmitLabel", "bad argument", "negative time spent", "ann", _submit(ms=-1), S.INVALID_ARGUMENT),
    C("SubmitLabel", "bad argument", "label outside the taxonomy", "ann", _submit(label="purple"), S.INVALID_ARGUMENT),
    C("SubmitLabel", "bad argument", "no task id", "ann", _submit(task_id=""), S.INVALID_ARGUMENT),
    C("SubmitLabel", "unknown id", "unknown task", "ann", _submit(task_id="no-such-task"), S.NOT_FOUND),
    C("SubmitLabel", "expired lease", "lease ran out", "ann", _submit(), S.FAILED_PRECONDITION),
    C("SkipTask", "missing token", "no metadata", "none", pb.SkipTaskRequest(task_id=EXPIRED), S.UNAUTHENTICATED),
    C("SkipTask", "wrong role", "an admin", "admin", pb.SkipTaskRequest(task_id=EXPIRED), S.PERMISSION_DENIED),
    C("SkipTask", "wrong role", "someone else's task", "exp", pb.SkipTaskRequest(task_id=EXPIRED),
      S.PERMISSION_DENIED),
    C("SkipTask", "bad argument", "no task id", "ann", pb.SkipTaskRequest(), S.INVALID_ARGUMENT),
    C("SkipTask", "bad argument", "reason too long", "ann", pb.SkipTaskRequest(task_id=EXPIRED, reason="r" * 4001),
      S.INVALID_ARGUMENT),
    C("SkipTask", "unknown id", "unknown task", "ann", pb.SkipTaskRequest(task_id="no-such-task"), S.NOT_FOUND),
    C("SkipTask", "expired lease", "lease ran out", "ann", pb.SkipTaskRequest(task_id=EXPIRED),
      S.FAILED_PRECONDITION),
    C("FlagItem", "missing token", "no metadata", "none", pb.FlagItemRequest(project=P, item_id="i1", comment="c"),
      S.UNAUTHENTICATED),
    C("FlagItem", "wrong role", "a suspended annotator", "sus", pb.FlagItemRequest(project=P, comment="c"),
      S.PERMISSION_DENIED),
    C("FlagItem", "bad argument", "blank comment", "ann", pb.FlagItemRequest(project=P, item_id="i1", comment=" "),
      S.INVALID_ARGUMENT),
    C("FlagItem", "bad argument", "no project", "ann", pb.FlagItemRequest(comment="c"), S.INVALID_ARGUMENT),
    C("FlagItem", "unknown id", "unknown project", "ann", pb.FlagItemRequest(project="nope", comment="c"),
      S.NOT_FOUND),
    C("FlagItem", "wrong role", "not a member of the project", "out",
      pb.FlagItemRequest(project=P, item_id="i1", comment="c"), S.PERMISSION_DENIED),
    C("FlagItem", "wrong role", "an item the annotator never leased", "ann",
      pb.FlagItemRequest(project=P, item_id="i2", comment="c"), S.PERMISSION_DENIED),
    C("FlagItem", "wrong role", "an unknown item, from an annotator", "ann",
      pb.FlagItemRequest(project=P, item_id="nope", comment="c"), S.PERMISSION_DENIED),
    C("FlagItem", "unknown id", "unknown item", "admin", pb.FlagItemRequest(project=P, item_id="nope", comment="c"),
      S.NOT_FOUND),
    C("GetGuidelines", "missing token", "no metadata", "none", pb.GetGuidelinesRequest(project=P), S.UNAUTHENTICATED),
    C("GetGuidelines", "wrong role", "a suspended annotator", "sus", pb.GetGuidelinesRequest(project=P),
      S.PERMISSION_DENIED),
    C("GetGuidelines", "bad argument", "no project", "ann", pb.GetGuidelinesRequest(), S.INVALID_ARGUMENT),
    C("GetGuidelines", "bad argument", "negative version", "ann", pb.GetGuidelinesRequest(project=P, version=-1),
      S.INVALID_ARGUMENT),
    C("GetGuidelines", "unknown id", "unknown project", "ann", pb.GetGuidelinesRequest(project="nope"), S.NOT_FOUND),
    C("GetGuidelines", "unknown id", "unknown version", "ann", pb.GetGuidelinesRequest(project=P, version=9),
      S.NOT_FOUND),
    C("ConfigureProject", "missing token", "no metadata", "none", _configure(), S.UNAUTHENTICATED),
    C("ConfigureProject", "wrong role", "an annotator", "ann", _configure(), S.PERMISSION_DENIED),
    C("ConfigureProject", "wrong role", "an expert", "exp", _configure(), S.PERMISSION_DENIED),
    C("ConfigureProject", "bad argument", "one label", "admin", _configure(labels=["only"]), S.INVALID_ARGUMENT),
    C("ConfigureProject", "bad argument", "a label twice", "admin", _configure(labels=["a", "a"]),
      S.INVALID_ARGUMENT),
    C("ConfigureProject", "bad argument", "one annotator for consensus", "admin", _configure(multi_annotators=1),
      S.INVALID_ARGUMENT),
    C("ConfigureProject", "bad argument", "target error of 1", "admin", _configure(target_auto_error=1.0),
      S.INVALID_ARGUMENT),
    C("ConfigureProject", "bad argument", "no project", "admin", _configure(project=""), S.INVALID_ARGUMENT),
    C("PublishGuidelines", "missing token", "no metadata", "none", pb.PublishGuidelinesRequest(project=P, text="t"),
      S.UNAUTHENTICATED),
    C("PublishGuidelines", "wrong role", "an annotator", "ann", pb.PublishGuidelinesRequest(project=P, text="t"),
      S.PERMISSION_DENIED),
    C("PublishGuidelines", "bad argument", "blank text", "admin", pb.PublishGuidelinesRequest(project=P, text=" "),
      S.INVALID_ARGUMENT),
    C("PublishGuidelines", "bad argument", "no project", "admin", pb.PublishGuidelinesRequest(text="t"),
      S.INVALID_ARGUMENT),
    C("PublishGuidelines", "unknown id", "unknown project", "admin", pb.PublishGuidelinesRequest(project="nope",
                                                                                                 text="t"),
      S.NOT_FOUND),
    C("CreateAnnotator", "missing token", "no metadata", "none", pb.CreateAnnotatorRequest(annotator_id="new"),
      S.UNAUTHENTICATED),
    C("CreateAnnotator", "wrong role", "an expert", "exp", pb.CreateAnnotatorRequest(annotator_id="new"),
      S.PERMISSION_DENIED),
    C("CreateAnnotator", "bad argument", "no id", "admin", pb.CreateAnnotatorRequest(), S.INVALID_ARGUMENT),
    C("CreateAnnotator", "bad argument", "the reserved id admin", "admin", pb.CreateAnnotatorRequest(
        annotator_id="admin"), S.INVALID_ARGUMENT),
    C("CreateAnnotator", "bad argument", "unknown role", "admin", pb.CreateAnnotatorRequest(annotator_id="new",
                                                                                            role="boss"),
      S.INVALID_ARGUMENT),
    C("GetItemHistory", "missing token", "no metadata", "none", pb.GetItemHistoryRequest(project=P, item_id="i1"),
      S.UNAUTHENTICATED),
    C("GetItemHistory", "wrong role", "an annotator", "ann", pb.GetItemHistoryRequest(project=P, item_id="i1"),
      S.PERMISSION_DENIED),
    C("GetItemHistory", "bad argument", "no item id", "admin", pb.GetItemHistoryRequest(project=P),
      S.INVALID_ARGUMENT),
    C("GetItemHistory", "bad argument", "no project", "admin", pb.GetItemHistoryRequest(item_id="i1"),
      S.INVALID_ARGUMENT),
    C("GetItemHistory", "unknown id", "unknown project", "admin", pb.GetItemHistoryRequest(project="nope",
                                                                                           item_id="i1"),
      S.NOT_FOUND),
    C("GetItemHistory", "unknown id", "unknown item", "admin", pb.GetItemHistoryRequest(project=P, item_id="nope"),
      S.NOT_FOUND),
    C("CreateCalibrationSession", "missing token", "no metadata", "none", _calibration(), S.UNAUTHENTICATED),
    C("CreateCalibrationSession", "wrong role", "an annotator", "ann", _calibration(), S.PERMISSION_DENIED),
    C("CreateCalibrationSession", "bad argument", "item ids and n", "admin", _calibration(n=2), S.INVALID_ARGUMENT),
    C("CreateCalibrationSession", "bad argument", "neither item ids nor n", "admin", _calibration(item_ids=[]),
      S.INVALID_ARGUMENT),
    C("CreateCalibrationSession", "bad argument", "an item twice", "admin", _calibration(item_ids=["i1", "i1"]),
      S.INVALID_ARGUMENT),
    C("CreateCalibrationSession", "bad argument", "a session id with spaces", "admin", _calibration(
        session_id="week 1"), S.INVALID_ARGUMENT),
    C("CreateCalibrationSession", "state", "one annotator", "admin", _calibration(annotators=["ann"]),
      S.FAILED_PRECONDITION),
    C("CreateCalibrationSession", "state", "more items than the project has", "admin", _calibration(
        item_ids=[], n=3), S.FAILED_PRECONDITION),
    C("CreateCalibrationSession", "state", "a suspended annotator", "admin", _calibration(
        annotators=["ann", "sus"]), S.FAILED_PRECONDITION),
    C("CreateCalibrationSession", "unknown id", "unknown project", "admin", _calibration(project="nope"),
      S.NOT_FOUND),
    C("CreateCalibrationSession", "unknown id", "unknown item", "admin", _calibration(item_ids=["i1", "nope"]),
      S.NOT_FOUND),
    C("CreateCalibrationSession", "unknown id", "unknown annotator", "admin", _calibration(annotators=["ann", "nope"]),
      S.NOT_FOUND),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rejected_call_has_its_status_and_message_and_writes_nothing(module_edge: Edge, case: Case) -> None:
    request = case.request
    if isinstance(request, pb.SubmitLabelRequest | pb.SkipTaskRequest) and request.task_id == EXPIRED:
        request = type(request)(**{**{f.name: getattr(request, f.name) for f in request.DESCRIPTOR.fields},
                                   "task_id": module_edge.expired_lease})
    before = module_edge.state()
    with pytest.raises(grpc.RpcError) as info:
        SEND[case.rpc](module_edge, request, module_edge.meta(case.who))
    error = info.value
    assert error.code() == case.status, f"{case.id}: {error.code()} {error.details()!r}"
    assert error.details() and error.details().strip(), f"{case.id}: no message"
    assert module_edge.state() == before, f"{case.id} was rejected but changed stored state"


def test_the_table_covers_every_rpc_of_the_proto() -> None:
    rpcs = {m.name for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods}
    assert set(SEND) == rpcs, "a new RPC needs its rows in this table"
    covered = {(c.rpc, c.kind) for c in CASES}
    for rpc in rpcs:
        for kind in ("missing token", "wrong role", "bad argument", "unknown id"):
            assert (rpc, kind) in covered or (rpc, kind) in NOT_APPLICABLE, f"{rpc}: no '{kind}' case"
    assert {rpc for rpc, kind in covered if kind == "expired lease"} == {"SubmitLabel", "SkipTask"}
    assert all(kind in KINDS for _, kind in covered)
