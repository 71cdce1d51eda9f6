"""A spans project through the gateway's gRPC API: configure, ingest golden spans, lease pre-labelled spans, submit."""

from __future__ import annotations

import grpc
import pytest

from schemas.events import ItemRouted, Thresholds, Tier
from schemas.rpc import gateway_pb2 as pb
from schemas.spans import SPANS_LABEL, Span
from tests.conftest import eventually
from tests.gateway_helpers import PROJECT
from tests.gateway_helpers import status_of as _code
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration

TYPES = ["person", "location"]
TEXT = "Ana flew to Lima"


def _span(start: int, end: int, label: str) -> pb.Span:
    return pb.Span(start=start, end=end, label=label)


async def test_a_spans_project_ingests_leases_and_takes_spans_only(  # type: ignore[no-untyped-def]
        env: Env, gateway) -> None:
    runtime, admin = gateway
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    project = await admin.configure_project("ner", TYPES, task_type="spans")
    assert project.task_type == "spans"
    assert await _code(admin.configure_project("ner", TYPES)) == grpc.StatusCode.FAILED_PRECONDITION
    assert await _code(admin.configure_project("x", TYPES, task_type="boxes")) == invalid

    overlapping = [_span(0, 3, "person"), _span(2, 5, "person")]
    bad = [pb.IngestItem(project="ner", item_id="g", text=TEXT, golden_spans=overlapping),
           pb.IngestItem(project="ner", item_id="h", text=TEXT, golden_spans=[_span(12, 30, "location")]),
           pb.IngestItem(project="ner", item_id="k", text=TEXT, golden_spans=[_span(0, 3, "org")]),
           pb.IngestItem(project="ner", item_id="l", text=TEXT, golden_label="person"),
           pb.IngestItem(project=PROJECT, item_id="m", text=TEXT, golden_spans=[_span(0, 3, "person")])]
    for item in bad:
        assert await _code(admin.ingest_items([item])) == invalid, item.item_id
    assert await runtime.db["items"].count_documents({}) == 0
    golden = pb.IngestItem(project="ner", item_id="g", text=TEXT,
                           golden_spans=[_span(12, 16, "location"), _span(0, 3, "person")])
    assert (await admin.ingest_items([golden, pb.IngestItem(project="ner", item_id="i", text=TEXT)])).accepted == 2
    assert (await admin.ingest_items([golden])).accepted == 1, "the same golden spans again are the same item"
    changed = pb.IngestItem(project="ner", item_id="g", text=TEXT, golden_spans=[_span(0, 3, "person")])
    assert await _code(admin.ingest_items([changed])) == grpc.StatusCode.ALREADY_EXISTS
    ingested = await env.read("item.ingested", lambda rs: len(rs) >= 2)
    by_id = {r["item_id"]: r for r in ingested}
    assert [(s["start"], s["label"]) for s in by_id["g"]["golden_spans"]] == [(0, "person"), (12, "location")]
    assert by_id["i"]["golden_spans"] is None

    prelabel = (Span(start=0, end=3, label="location", confidence=0.55),)
    await env.publish_events([ItemRouted(producer="test", project="ner", item_id="i", tier=Tier.SINGLE,
                                         required_annotators=1, thresholds=Thresholds(), spans=prelabel)])
    await eventually(lambda: runtime.db["tasks"].count_documents({"project": "ner", "status": "open"}))
    user = admin.as_user(await admin.create_annotator("ann"))
    task = await user.lease("ner")
    assert task.task_type == "spans" and task.text == TEXT and list(task.labels) == TYPES
    assert [(s.start, s.end, s.label, round(s.confidence, 2)) for s in task.spans] == [(0, 3, "location", 0.55)]

    assert await _code(user.submit(task.task_id, "person", "k1")) == invalid
    assert await _code(user.submit(task.task_id, "", "k1", spans=[_span(0, 3, "person"), _span(1, 4, "person")])) \
        == invalid
    assert await _code(user.submit(task.task_id, "", "k1", spans=[_span(0, 99, "person")])) == invalid
    assert await _code(user.submit(task.task_id, "", "k1", spans=[_span(0, 3, "org")])) == invalid
    answer = [_span(12, 16, "location"), _span(0, 3, "person")]  # retyped and added
    first = await user.submit(task.task_id, "", "k1", spans=answer)
    assert (await user.submit(task.task_id, "", "k1", spans=answer)).duplicate
    assert await _code(user.submit(task.task_id, "", "k1", spans=answer[:1])) == grpc.StatusCode.ALREADY_EXISTS
    submitted = await env.read("label.submitted", lambda rs: len(rs) >= 1)
    assert submitted[0]["label"] == SPANS_LABEL and first.submission_id
    assert [(s["start"], s["end"], s["label"]) for s in submitted[0]["spans"]] == [(0, 3, "person"),
                                                                                   (12, 16, "location")]


async def test_a_classification_project_refuses_spans(env: Env, gateway) -> None:  # type: ignore[no-untyped-def]
    runtime, admin = gateway
    await admin.ingest_items([pb.IngestItem(project=PROJECT, item_id="c", text=TEXT)])
    await env.publish_events([ItemRouted(producer="test", project=PROJECT, item_id="c", tier=Tier.SINGLE,
                                         required_annotators=1, thresholds=Thresholds())])
    await eventually(lambda: runtime.db["tasks"].count_documents({"project": PROJECT, "status": "open"}))
    user = admin.as_user(await admin.create_annotator("ann"))
    task = await user.lease(PROJECT)
    assert task.task_type == "classification" and not task.spans
    assert await _code(user.submit(task.task_id, "yes", "k", spans=[_span(0, 3, "yes")])) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert not (await user.submit(task.task_id, "yes", "k")).duplicate
    submitted = await env.read("label.submitted", lambda rs: len(rs) >= 1)
    assert submitted[0]["label"] == "yes" and submitted[0]["spans"] is None
