"""`labelmesh label-studio sync` against a real gateway: golden and expert tasks reach Label Studio as the gateway's
queue hands them out (a golden task to whoever's golden turn it is, without its answer; an expert-tier item to the
expert only), and the annotations made there come back through the sync. Label Studio itself is a stand-in here
that keeps imported tasks and the annotations the test adds; tests/e2e/test_label_studio.py runs the real one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from labelmesh.client import GatewayClient
from labelmesh.label_studio import mapping
from labelmesh.label_studio.config import BridgeConfig, MappedUser
from labelmesh.label_studio.sync import sync
from schemas.events import Tier
from schemas.rpc import gateway_pb2 as pb
from tests.conftest import eventually
from tests.gateway_helpers import ADMIN, LABELS, PROJECT, routed
from tests.kafka_helpers import Env

LS_USERS = {"alice": 11, "eve": 12}


class RecordingLabelStudio:
    """Label Studio's task list for one project: what the sync imported, and annotations added to it."""

    def __init__(self) -> None:
        self.imported: list[dict[str, Any]] = []

    async def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        ids = list(range(len(self.imported) + 1, len(self.imported) + len(tasks) + 1))
        self.imported += [{"id": i, "annotations": [], **t} for i, t in zip(ids, tasks, strict=True)]
        return {"task_ids": ids}

    async def tasks(self, project_id: int) -> list[dict[str, Any]]:
        return self.imported

    async def delete_task(self, task_id: int) -> None:
        raise AssertionError(f"no lease expires in this test, yet task {task_id} was deleted")

    def of(self, annotator: str) -> list[str]:
        return [t["data"]["labelmesh_item_id"] for t in self.imported if t["data"]["labelmesh_annotator"] == annotator]

    def annotate_all(self) -> None:
        """Everyone answers their unanswered tasks with the pre-label's top choice."""
        for task in self.imported:
            if not task["annotations"]:
                who = task["data"]["labelmesh_annotator"]
                choice = json.loads(task["data"]["labelmesh_prelabel"])[0][0]
                task["annotations"] = [{"id": 100 + task["id"], "completed_by": LS_USERS[who], "lead_time": 2.0,
                                        "result": [{"from_name": mapping.FROM_NAME, "to_name": mapping.TO_NAME,
                                                    "type": "choices", "value": {"choices": [choice]}}]}]


async def test_golden_and_expert_tasks_reach_label_studio_as_the_gateway_decides(  # type: ignore[no-untyped-def]
        env: Env, start_gateway, tmp_path: Path) -> None:
    runtime = await start_gateway(golden_rate=1.0, golden_settled_rate=1.0, lease_seconds=300.0)
    gateway = f"127.0.0.1:{runtime.component.port}"
    admin = GatewayClient(gateway, ADMIN)
    try:
        await admin.configure_project(PROJECT, LABELS, guidelines="v1")
        tokens = {"alice": await admin.create_annotator("alice", projects=[PROJECT]),
                  "eve": await admin.create_annotator("eve", role="expert", projects=[PROJECT])}
        await admin.ingest_items([pb.IngestItem(project=PROJECT, item_id="g", text="a known answer",
                                                golden_label="maybe"),
                                  pb.IngestItem(project=PROJECT, item_id="x", text="hard: an expert's"),
                                  pb.IngestItem(project=PROJECT, item_id="s", text="one look will do")])
        await env.publish_events([routed("g", Tier.SINGLE, 1).model_copy(update={"golden": True}),
                                  routed("x", Tier.EXPERT, 1), routed("s", Tier.SINGLE, 1)])

        async def queued() -> bool:
            return await runtime.db["tasks"].count_documents({"project": PROJECT}) == 3

        await eventually(queued)
        config = BridgeConfig(project=PROJECT, label_studio_url="http://label-studio", ls_project_id=1,
                              gateway=gateway, ledger=str(tmp_path / "ledger.sqlite"),
                              users=[MappedUser(email=f"{who}@example.com", ls_user_id=LS_USERS[who], annotator=who,
                                                token=token) for who, token in tokens.items()])
        ls = RecordingLabelStudio()

        # Golden turn for both: the golden item first, each once, and nothing in its task gives the answer away.
        first = await sync(config, ls, per_annotator=5)  # type: ignore[arg-type]
        assert first.created == {"alice": 1, "eve": 1}
        assert (ls.of("alice"), ls.of("eve")) == (["g"], ["g"])
        assert all("maybe" not in json.dumps(t) for t in ls.imported), ls.imported

        # Answered in Label Studio: the sync submits both, then the queue gives eve the expert item, alice the other.
        ls.annotate_all()
        second = await sync(config, ls, per_annotator=5)  # type: ignore[arg-type]
        assert dict(second.annotations) == {"submitted": 2}
        assert (ls.of("alice"), ls.of("eve")) == (["g", "s"], ["g", "x"])
        tiers = {(t["data"]["labelmesh_annotator"], t["data"]["labelmesh_item_id"]): t["data"]["labelmesh_tier"]
                 for t in ls.imported}
        assert (tiers[("eve", "x")], tiers[("alice", "s")]) == ("expert", "single")

        # Nothing is left for either: the expert item never reaches alice.
        ls.annotate_all()
        third = await sync(config, ls, per_annotator=5)  # type: ignore[arg-type]
        assert dict(third.annotations) == {"submitted": 2} and third.created == {"alice": 0, "eve": 0}
        assert "x" not in ls.of("alice")
        submitted = await env.read("label.submitted", lambda rs: len(rs) >= 4)
        assert sorted((r["annotator_id"], r["item_id"], r["golden"]) for r in submitted) == [
            ("alice", "g", True), ("alice", "s", False), ("eve", "g", True), ("eve", "x", False)]
    finally:
        await admin.close()
