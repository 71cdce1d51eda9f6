"""`labelmesh annotate` driven by scripted keystrokes against a real gateway over a real gRPC channel."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from labelmesh.cli import app
from schemas.events import ItemRouted, LabelScore, Thresholds, Tier
from schemas.rpc import gateway_pb2 as pb
from schemas.spans import Span
from tests.conftest import eventually
from tests.gateway_helpers import PROJECT
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration
GUIDELINES = "Answer **maybe** only when both readings fit."


def _routed(item_id: str, probs: tuple[float, float]) -> ItemRouted:
    # Distinct margins fix the order the queue hands them out in: smallest margin first.
    return ItemRouted(producer="test", project=PROJECT, item_id=item_id, tier=Tier.SINGLE, required_annotators=1,
                      top_k=(LabelScore(label="yes", probability=probs[0]), LabelScore(label="no", probability=probs[1])),
                      thresholds=Thresholds())


async def test_a_person_labels_skips_flags_and_reads_guidelines_in_the_terminal(env: Env, gateway) -> None:  # type: ignore[no-untyped-def]
    runtime, admin = gateway
    await admin.publish_guidelines(PROJECT, GUIDELINES)
    token = await admin.create_annotator("ann")
    texts = {"first": "Can I pay by card? [urgent]", "second": "Where is my parcel?", "third": "Is it open on Sunday?"}
    await admin.ingest_items([pb.IngestItem(project=PROJECT, item_id=i, text=t) for i, t in texts.items()])
    await env.publish_events([_routed("first", (0.51, 0.49)), _routed("second", (0.6, 0.3)),
                              _routed("third", (0.9, 0.05))])

    async def queued() -> bool:
        return await runtime.db["tasks"].count_documents({"status": "open"}) == 3

    await eventually(queued)
    keys = ["g", "purple", "f", "the text is cut off", "2",  # first: guidelines, a typo, a flag, then label 2 (no)
            "s",  # second: skipped
            "MAYBE"]  # third: by name, in any case; then the queue is empty
    address = f"127.0.0.1:{runtime.component.port}"
    result = await asyncio.to_thread(CliRunner().invoke, app, ["annotate", "--project", PROJECT, "--gateway", address,
                                                               "--token", token], input="\n".join(keys) + "\n")
    out = result.output
    assert result.exit_code == 0, out
    assert texts["first"] in out and texts["third"] in out and "Model suggests: yes (51%), no (49%)" in out
    assert "1 yes" in out and "3 maybe" in out, "the taxonomy, numbered"
    assert "Answer maybe only when both readings fit." in out and "guidelines v2" in out
    assert "'purple' is not one of the labels" in out
    assert "No task is waiting for you" in out and "2 labelled, 1 skipped, 1 flagged" in out

    labels = sorted([d["label"] async for d in runtime.db["submissions"].find()])
    assert labels == ["maybe", "no"]
    submitted = await env.read("label.submitted", lambda rs: len(rs) >= 2)
    assert {r["item_id"]: (r["label"], r["annotator_id"], r["guideline_version"]) for r in submitted} == {
        "first": ("no", "ann", 2), "third": ("maybe", "ann", 2)}
    assert all(r["time_spent_ms"] >= 0 for r in submitted)
    skipped = await runtime.db["leases"].find_one({"item_id": "second", "annotator": "ann"})
    assert skipped["state"] == "skipped"
    flags = await env.read("qc.flagged", lambda rs: len(rs) >= 1)
    assert [(f["item_id"], f["kind"], f["message"]) for f in flags] == [
        ("first", "annotator_feedback", "the text is cut off")]


async def test_quitting_keeps_the_lease_and_a_bad_token_is_refused(env: Env, gateway) -> None:  # type: ignore[no-untyped-def]
    runtime, admin = gateway
    token = await admin.create_annotator("ann")
    await admin.ingest_items([pb.IngestItem(project=PROJECT, item_id="only", text="Hello?")])
    await env.publish_events([_routed("only", (0.7, 0.2))])

    async def queued() -> bool:
        return await runtime.db["tasks"].count_documents({"status": "open"}) == 1

    await eventually(queued)
    address = f"127.0.0.1:{runtime.component.port}"
    quit_run = await asyncio.to_thread(CliRunner().invoke, app, ["annotate", "--project", PROJECT, "--gateway", address,
                                                                 "--token", token], input="q\n")
    assert quit_run.exit_code == 0 and "Hello?" in quit_run.output and "0 labelled" in quit_run.output
    lease = await runtime.db["leases"].find_one({"item_id": "only"})
    assert lease["state"] == "leased" and await runtime.db["submissions"].count_documents({}) == 0

    refused = await asyncio.to_thread(CliRunner().invoke, app, ["annotate", "--project", PROJECT, "--gateway", address,
                                                                "--token", "not-a-token"], input="1\n")
    assert refused.exit_code == 1 and "UNAUTHENTICATED" in refused.output



async def test_a_person_corrects_pre_labelled_spans_in_the_terminal(  # type: ignore[no-untyped-def]
        env: Env, gateway) -> None:
    runtime, admin = gateway
    await admin.configure_project("ner", ["person", "location"], task_type="spans")
    token = await admin.create_annotator("ann")
    text = "Ana flew to New York today"
    await admin.ingest_items([pb.IngestItem(project="ner", item_id="s", text=text)])
    await env.publish_events([ItemRouted(
        producer="test", project="ner", item_id="s", tier=Tier.SINGLE, required_annotators=1,
        top_k=(LabelScore(label="__spans__", probability=0.4),), thresholds=Thresholds(),
        spans=(Span(start=12, end=15, label="person", confidence=0.4),))])
    await eventually(lambda: runtime.db["tasks"].count_documents({"project": "ner", "status": "open"}))
    keys = ["+ 4 person", "t 1 location", "b 1 4-5", "+ 1 person", ""]  # an overlap refused, then fixed; accept
    address = f"127.0.0.1:{runtime.component.port}"
    result = await asyncio.to_thread(CliRunner().invoke, app, ["annotate", "--project", "ner", "--gateway", address,
                                                               "--token", token], input="\n".join(keys) + "\n")
    out = result.output
    assert result.exit_code == 0, out
    assert "1. 'New' person (40%)" in out and "would overlap" in out and "Saved 2 entities" in out
    (submitted,) = await env.read("label.submitted", lambda rs: len(rs) >= 1)
    assert [(text[s["start"]:s["end"]], s["label"]) for s in submitted["spans"]] == [("Ana", "person"),
                                                                                     ("New York", "location")]
