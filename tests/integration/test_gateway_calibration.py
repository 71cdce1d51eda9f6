"""Calibration sessions end to end over a real gRPC channel: the gateway hands every chosen annotator the same items,
and qc, reading label.submitted from the real broker, reports them as one session."""

from __future__ import annotations

import asyncio
import os
import sys

import grpc
import pytest

from schemas.events import LabelFinalized, Provenance, Tier
from schemas.keys import item_key
from schemas.rpc import gateway_pb2 as pb
from services.qc.app import create_app as create_qc
from services.qc.report import session_report
from services.qc.settings import QcSettings
from tests.conftest import eventually
from tests.gateway_helpers import PROJECT, routed, status_of
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration
# Who labels what: a and b agree everywhere, c differs on two items.
ANSWERS = {"a": ["yes", "no", "yes", "maybe"], "b": ["yes", "no", "yes", "maybe"], "c": ["yes", "yes", "no", "maybe"]}


async def test_three_annotators_label_the_same_items_and_qc_sees_one_session(env: Env, gateway) -> None:  # type: ignore[no-untyped-def]
    runtime, admin = gateway
    qc = create_qc(env.settings(QcSettings, confirm_single=False))
    await qc.start()
    try:
        users = {name: admin.as_user(await admin.create_annotator(name)) for name in ANSWERS}
        expert = admin.as_user(await admin.create_annotator("e", role="expert"))
        ids = [f"c{n}" for n in range(6)]
        await admin.ingest_items([pb.IngestItem(project=PROJECT, item_id=i, text=f"text {i}") for i in ids]
                                 + [pb.IngestItem(project=PROJECT, item_id="g", text="golden", golden_label="no")])
        await env.publish_events([routed("c0", Tier.SINGLE, 1)])  # c0 also waits for one production review
        await eventually(lambda: _count(runtime, "tasks", {"item_id": "c0"}))
        early = await users["c"].lease(PROJECT)  # before the session: c's lease on c0 runs out below
        assert early.item_id == "c0" and early.session_id == ""

        assert await status_of(admin.create_calibration_session(PROJECT, ["c0", "g"])) == \
            grpc.StatusCode.INVALID_ARGUMENT, "golden answers are never shown"
        assert await status_of(admin.create_calibration_session(PROJECT, n=8)) == grpc.StatusCode.FAILED_PRECONDITION
        session = await admin.create_calibration_session(PROJECT, n=4, session_id="week-1")
        assert session.session_id == "week-1" and list(session.annotators) == ["a", "b", "c"], \
            "every active annotator by default; the expert is not one"
        items = list(session.item_ids)
        assert len(items) == 4 and set(items) <= set(ids)
        again = await admin.create_calibration_session(PROJECT, n=4, session_id="week-1")
        assert list(again.item_ids) == items, "a retried call returns the same session"
        assert await status_of(admin.create_calibration_session(PROJECT, n=3, session_id="week-1")) == \
            grpc.StatusCode.ALREADY_EXISTS

        # Routing and final labels for the same items do not touch the calibration tasks.
        await env.publish_events([
            routed(items[0], Tier.MULTI, 2),
            LabelFinalized(producer="test", project=PROJECT, item_id=items[1], label="no", version=1,
                           provenance=Provenance.IMPORTED, confidence=1.0, human_labels=0, expert_labels=0, verified=False),
        ])
        await eventually(lambda: _count(runtime, "history", {"kind": {"$in": ["routed", "finalized"]},
                                                             "item_id": {"$in": items[:2]}}, at_least=2))

        first = await users["a"].lease(PROJECT)
        assert first.session_id == "week-1" and first.tier == "calibration" and first.item_id == items[0]
        assert not first.prelabel, "calibration asks for independent judgements: no model suggestion"
        assert (await users["a"].lease(PROJECT)).task_id == first.task_id, "no second copy while the lease runs"
        expert_task = await expert.lease(PROJECT)
        assert expert_task is None or expert_task.session_id == "", "the expert was not asked"

        # The leases run out (5 s, swept every 0.2 s): each item comes back to the same people, and to nobody else.
        dropped = await users["b"].lease(PROJECT)
        assert dropped.item_id == items[0]
        await asyncio.sleep(5.6)
        assert await status_of(users["b"].submit(dropped.task_id, "yes", "late")) == \
            grpc.StatusCode.FAILED_PRECONDITION
        task = await runtime.db["tasks"].find_one({"_id": f"week-1/{items[0]}"})
        assert sorted(task["pending"]) == ["a", "b", "c"]
        assert await eventually(lambda: _none_left(runtime, {"task_id": task["_id"]})), "the sweeper freed both slots"

        seen: dict[str, list[str]] = {}
        for name, user in users.items():
            task = await user.lease(PROJECT)
            for n in range(len(items)):
                assert task.session_id == "week-1" and task.item_id == items[n], (name, n, task)
                await user.submit(task.task_id, ANSWERS[name][n], f"{name}-{n}")
                seen.setdefault(name, []).append(task.item_id)
                task = await user.lease(PROJECT)
            assert task is None or task.session_id == "", "each calibration item once per annotator"
        assert seen["a"] == seen["b"] == seen["c"] == items
        done = await runtime.db["tasks"].count_documents({"session": "week-1", "status": "done"})
        assert done == 4

        submitted = await env.read("label.submitted", lambda rs: sum(r.get("session_id") == "week-1" for r in rs) >= 12)
        assert all(r["guideline_version"] == 1 for r in submitted)

        # qc keeps them as one session, apart from the item's own votes.
        await eventually(lambda: _count(qc, "labels", {"session": "week-1"}, at_least=12), timeout=60)
        report = await session_report(qc.db, PROJECT, session="week-1")
        assert report.annotators == ("a", "b", "c") and sorted(i.item_id for i in report.items) == sorted(items)
        assert not report.incomplete and report.kappa.get("a", "b") == pytest.approx(1.0)
        assert {i.item_id for i in report.most_disputed()} == {items[1], items[2]}
        qc_item = await qc.db["items"].find_one({"_id": item_key(PROJECT, items[0])})
        assert not (qc_item or {}).get("votes"), "calibration labels are not votes on the item"

        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "labelmesh.cli", "qc-report", "--project", PROJECT, "--session", "week-1",
            env={**os.environ, **env.environ()}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert "3 annotators, 4 items" in out.decode()
    finally:
        await qc.stop()


async def _none_left(runtime, query: dict) -> bool:  # type: ignore[no-untyped-def]
    return await runtime.db["claims"].count_documents(query) == 0


async def _count(runtime, collection: str, query: dict, at_least: int = 1) -> bool:  # type: ignore[no-untyped-def]
    return await runtime.db[collection].count_documents(query) >= at_least
