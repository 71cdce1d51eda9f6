"""The README's "Label your own data" walkthrough, run as it is against the five services as separate processes."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
from pathlib import Path

import pytest

from labelmesh.client import GatewayClient
from labelmesh.stack import Stack
from tests.kafka_helpers import Env

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "label-your-own-data"
ADMIN = "walkthrough-admin-token"
PORT = 50171
TRUTH = {"r1": "positive", "r2": "negative", "r3": "positive", "r4": "negative", "r5": "positive", "r6": "negative"}


async def _simulated_team(client: GatewayClient, done: asyncio.Event) -> None:
    """Three more annotators answer every task with the right label until the walkthrough has finished: without a
    model every item needs three people, and alice and bob only try the terminal client."""
    while True:  # the walkthrough creates the project; the team joins once it exists
        try:
            tokens = [await client.create_annotator(f"sim-{n}") for n in range(3)]
            break
        except Exception:  # noqa: BLE001 - the gateway may not be serving yet
            await asyncio.sleep(0.5)
    users = [client.as_user(t) for t in tokens]
    while not done.is_set():
        idle = True
        for n, user in enumerate(users):
            try:
                task = await user.lease("reviews")
            except Exception:  # noqa: BLE001 - the project does not exist until step 1 ran
                task = None
            if task is not None:
                idle = False
                await user.submit(task.task_id, TRUTH[task.item_id], key=f"sim-{n}-{task.task_id}")
        if idle:
            await asyncio.sleep(0.5)


async def test_the_walkthrough_runs_and_exports_every_item_with_its_label(env: Env, tmp_path: Path) -> None:
    stack = Stack(env={**env.environ(), "LABELMESH_PRELABELER_ENCODER": "hashing",
                       "LABELMESH_GATEWAY_ADMIN_TOKEN": ADMIN, "LABELMESH_GATEWAY_GOLDEN_RATE": "0.0",
                       "LABELMESH_GATEWAY_LEASE_SECONDS": "10"},
                  log_dir=tmp_path / "logs", port_offset=120, grpc_port=PORT)
    await stack.start_all()
    client = GatewayClient(f"127.0.0.1:{PORT}", ADMIN)
    done = asyncio.Event()
    team = asyncio.create_task(_simulated_team(client, done))
    try:
        proc = await asyncio.create_subprocess_exec(
            "bash", str(EXAMPLE / "walkthrough.sh"),
            env={**os.environ, **env.environ(), "LABELMESH_ADMIN_TOKEN": ADMIN, "LABELMESH_GATEWAY": f"127.0.0.1:{PORT}",
                 "OUT": str(tmp_path), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                 "COLUMNS": "160"},
            # alice opens the terminal client and quits at her first task; bob's input is at its end already
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(b"q\n"), timeout=480)
        assert proc.returncode == 0, f"walkthrough failed:\n{out.decode()[-3000:]}\n{err.decode()[-3000:]}"
    finally:
        done.set()
        await team
        await client.close()
        stack.stop_all()

    rows = [json.loads(line) for line in (tmp_path / "reviews-labels.jsonl").read_text().splitlines()]
    assert {r["item_id"]: r["label"] for r in rows} == TRUTH
    with (EXAMPLE / "reviews.csv").open() as handle:
        sites = {r["id"]: r["source_site"] for r in csv.DictReader(handle)}
    for row in rows:
        assert row["metadata"] == {"source_site": sites[row["item_id"]]}
        assert sorted(a["label"] for a in row["annotator_labels"]) == [TRUTH[row["item_id"]]] * 3
        assert row["provenance"] == "consensus" and 0 < row["confidence"] <= 1
    from datasets import load_from_disk

    dataset = load_from_disk(str(tmp_path / "reviews-dataset"))["train"]
    assert dataset.features["label"].names == ["positive", "negative"] and len(dataset) == 6
