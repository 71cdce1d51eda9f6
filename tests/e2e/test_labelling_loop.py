"""The whole loop as separate processes: gRPC ingest -> prelabel -> route -> gRPC tasks -> qc -> trainer -> new model."""

from __future__ import annotations

import asyncio
import csv
import os
import sys
import random
from collections import Counter
from pathlib import Path

import pytest

from labelmesh.client import GatewayClient
from labelmesh.datasets import load
from labelmesh.stack import Stack
from schemas.rpc import gateway_pb2 as pb
from tests.kafka_helpers import Env

pytestmark = pytest.mark.e2e

LABELS = ["card_arrival", "exchange_rate", "lost_or_stolen_card", "top_up_failed", "pin_blocked", "cash_withdrawal_charge"]
ADMIN = "e2e-admin-token"


def _rows() -> tuple[list, list]:
    rows = [r for r in load("train") if r.label in LABELS]
    random.Random(3).shuffle(rows)
    return rows[:150], rows[150:200]


async def _answer_everything(client: GatewayClient, tokens: dict[str, str], truth: dict[str, str], want: set[str],
                             env: Env) -> dict[str, int]:
    """Simulated annotators label every task they are given with the dataset's label until all finals exist."""
    finals: set[str] = set()
    labelled = Counter()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 240
    while not want <= finals:
        assert loop.time() < deadline, f"items without a final label: {sorted(want - finals)[:10]}"
        progressed = False
        for name, token in tokens.items():
            user = client.as_user(token)
            task = await user.lease("e2e")
            if task is None:
                continue
            progressed = True
            assert task.text and task.labels, "a task carries the text and the label set"
            await user.submit(task.task_id, truth[task.item_id], key=f"{name}-{task.task_id}", time_spent_ms=1200)
            labelled[name] += 1
        records = await env.read_all("label.finalized")
        finals = {r["item_id"] for r in records if r["project"] == "e2e"}
        if not progressed:
            await asyncio.sleep(0.5)
    return dict(labelled)


async def test_items_reach_final_labels_and_the_model_advances(env: Env, tmp_path: Path) -> None:
    stack = Stack(
        env={**env.environ(), "LABELMESH_PRELABELER_ENCODER": "hashing", "LABELMESH_GATEWAY_ADMIN_TOKEN": ADMIN,
             "LABELMESH_TRAINER_FIRST_MODEL_MIN": "120", "LABELMESH_TRAINER_RETRAIN_EVERY": "30",
             "LABELMESH_GATEWAY_GOLDEN_RATE": "0.0"},
        log_dir=tmp_path / "logs", port_offset=100, grpc_port=50151,
    )
    await stack.start_all()
    client = GatewayClient("127.0.0.1:50151", ADMIN)
    try:
        await client.configure_project("e2e", LABELS, guidelines="Pick the customer's intent.")
        tokens = {f"ann-{i}": await client.create_annotator(f"ann-{i}") for i in range(3)}
        tokens["expert-0"] = await client.create_annotator("expert-0", role="expert")
        bootstrap, fresh = _rows()
        truth = {r.item_id: r.label for r in bootstrap + fresh}

        # Week 1: the internal team's labels bootstrap model v1 through the trainer, like every later model,
        # with the `labelmesh bootstrap` command an operator would run.
        labelled_file = tmp_path / "bootstrap.csv"
        with labelled_file.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["item_id", "text", "category"])
            writer.writerows([r.item_id, r.text, r.label] for r in bootstrap)
        command = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "labelmesh.cli", "bootstrap", str(labelled_file), "--project", "e2e",
            "--gateway", "127.0.0.1:50151", "--timeout", "120",
            env={**os.environ, **env.environ(), "LABELMESH_ADMIN_TOKEN": ADMIN},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        output = (await command.communicate())[0].decode()
        assert command.returncode == 0, output
        assert f"ingested {len(bootstrap)} of {len(bootstrap)} trusted rows" in output
        assert "model v1 trained on" in output
        models = await env.read("model.updated", lambda rs: len(rs) >= 1, timeout=10)
        assert models[0]["model_version"] == 1

        # New items are pre-labelled by v1, routed, and labelled by people over gRPC.
        response = await client.ingest_items([pb.IngestItem(project="e2e", item_id=r.item_id, text=r.text) for r in fresh])
        assert response.accepted == len(fresh)
        prelabeled = await env.read(
            "item.prelabeled", lambda rs: {r["item_id"] for r in rs} >= {r.item_id for r in fresh}, timeout=60
        )
        assert all(r["model_version"] and r["top_k"] for r in prelabeled if r["item_id"] in truth
                   and r["item_id"].startswith("train") and not r["trusted"])
        labelled = await _answer_everything(client, tokens, truth, {r.item_id for r in fresh}, env)
        assert sum(labelled.values()) > 0, "some items needed people"

        finals = await env.read_all("label.finalized")
        latest = {r["item_id"]: r for r in finals}
        assert {r.item_id for r in fresh} <= latest.keys()
        routed = await env.read("item.routed", lambda rs: len(rs) >= len(fresh), timeout=10)
        assert {r["tier"] for r in routed} <= {"auto", "single", "multi", "expert"}

        # 150 + 50 labels passed the retrain threshold: the trainer published v2 and the prelabeler serves it.
        models = await env.read("model.updated", lambda rs: len(rs) >= 2, timeout=120)
        assert [m["model_version"] for m in models][:2] == [1, 2]
        await client.ingest_items([pb.IngestItem(project="e2e", item_id="after-v2", text="my card has not arrived")])
        after = await env.read("item.prelabeled", lambda rs: any(r["item_id"] == "after-v2" for r in rs), timeout=60)
        assert next(r for r in after if r["item_id"] == "after-v2")["model_version"] == 2

        history = await client.history("e2e", fresh[0].item_id)
        assert {"ingested", "routed", "finalized"} <= {e.kind for e in history.entries}
    finally:
        await client.close()
        codes = stack.stop_all()
    assert all(code == 0 for code in codes.values()), f"services did not stop cleanly: {codes}"
