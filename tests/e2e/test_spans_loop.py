"""A spans project through the whole loop as separate processes, over gRPC: ingest, pre-label, route, label with
corrections, qc, final, retrain and export."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from labelmesh.admin_cli import export_row
from labelmesh.client import GatewayClient
from labelmesh.export_formats import write_export
from labelmesh.stack import Stack
from schemas.rpc import gateway_pb2 as pb
from schemas.rpc import gateway_pb2_grpc as pb_grpc
from tests.kafka_helpers import Env

pytestmark = pytest.mark.e2e

TYPES = ["person", "location"]
ADMIN = "e2e-spans-admin"
NAMES = ["Ana", "Bo", "Cyd", "Dee", "Eli", "Fay", "Gus", "Hal"]
PLACES = ["Lima", "Oslo", "Rome", "Kyiv", "Doha", "Baku"]
VERBS = ["flew to", "lives in", "left"]

Answer = list[tuple[int, int, str]]


def _items(first: int, n: int) -> dict[str, tuple[str, Answer]]:
    """Tiny in-test sentences with their true entities: '<name> <verb> <place> today', every fourth none."""
    out: dict[str, tuple[str, Answer]] = {}
    for k in range(first, first + n):
        if k % 4 == 0:
            out[f"s{k}"] = ("nothing happened here today", [])
            continue
        who, verb, where = NAMES[k % len(NAMES)], VERBS[k % len(VERBS)], PLACES[(k // 2) % len(PLACES)]
        text = f"{who} {verb} {where} today"
        at = text.index(where)
        out[f"s{k}"] = (text, [(0, len(who), "person"), (at, at + len(where), "location")])
    return out


async def _label_until_final(client: GatewayClient, tokens: dict[str, str], truth: dict[str, tuple[str, Answer]],
                             want: set[str], env: Env) -> Counter:
    """Annotators lease tasks and submit the true entities, correcting the pre-labelled spans where they differ."""
    counts: Counter = Counter()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 240
    finals: set[str] = set()
    while not want <= finals:
        assert loop.time() < deadline, f"items without a final: {sorted(want - finals)[:10]}"
        progressed = False
        for name, token in tokens.items():
            user = client.as_user(token)
            task = await user.lease("ner")
            if task is None:
                continue
            progressed = True
            text, answer = truth[task.item_id]
            assert task.task_type == "spans" and task.text == text and list(task.labels) == TYPES
            shown = sorted((s.start, s.end, s.label) for s in task.spans)
            counts["shown_spans" if task.spans else "blank"] += 1
            if task.spans:
                counts[("shown", task.item_id)] += 1
            counts["accepted" if task.spans and shown == answer else "corrected"] += 1
            await user.submit(task.task_id, "", key=f"{name}-{task.task_id}", time_spent_ms=900,
                              spans=[pb.Span(start=s, end=e, label=t) for s, e, t in answer])
        finals = {r["item_id"] for r in await env.read_all("label.finalized") if r["project"] == "ner"}
        if not progressed:
            await asyncio.sleep(0.5)
    return counts


async def test_a_spans_project_goes_round_the_loop(env: Env, tmp_path: Path) -> None:
    stack = Stack(
        env={**env.environ(), "LABELMESH_PRELABELER_ENCODER": "hashing", "LABELMESH_GATEWAY_ADMIN_TOKEN": ADMIN,
             "LABELMESH_TRAINER_FIRST_MODEL_MIN": "20", "LABELMESH_TRAINER_RETRAIN_EVERY": "10",
             "LABELMESH_GATEWAY_GOLDEN_RATE": "0.0"},
        log_dir=tmp_path / "logs", port_offset=170, grpc_port=50197,
    )
    await stack.start_all()
    client = GatewayClient("127.0.0.1:50197", ADMIN)
    try:
        project = await client.configure_project("ner", TYPES, guidelines="Mark people and places.",
                                                 task_type="spans")
        assert project.task_type == "spans"
        tokens = {f"ann-{i}": await client.create_annotator(f"ann-{i}") for i in range(3)}
        tokens["expert-0"] = await client.create_annotator("expert-0", role="expert")

        # Cold start: no model, so people mark every entity from scratch, three per item, merged by qc; items still
        # open when the first model arrives are pre-labelled again by it, and their new tasks show its spans.
        cold = _items(0, 30)
        await client.ingest_items([pb.IngestItem(project="ner", item_id=i, text=t) for i, (t, _) in cold.items()])
        counts = await _label_until_final(client, tokens, cold, set(cold), env)
        assert counts["blank"] > 0
        shown = {k[1] for k in counts if isinstance(k, tuple)}
        again = {r["item_id"] for r in await env.read_all("item.prelabeled") if r["model_version"] is not None}
        assert shown <= again <= set(cold), "only a model's pre-label shows spans"
        finals = {r["item_id"]: r for r in await env.read_all("label.finalized")}
        for item, (_, answer) in cold.items():
            assert sorted((s["start"], s["end"], s["label"]) for s in finals[item]["spans"]) == answer
            assert finals[item]["label"] == "__spans__"

        # The trainer learns a span tagger from the finals; the prelabeler serves it.
        (v1, *_) = await env.read("model.updated", lambda rs: len(rs) >= 1, timeout=120)
        assert v1["model_version"] == 1 and v1["heldout_metrics"]["train_size"] >= 20

        # New items arrive pre-labelled with spans and an item confidence; people accept or correct them.
        warm = _items(30, 12)
        await client.ingest_items([pb.IngestItem(project="ner", item_id=i, text=t) for i, (t, _) in warm.items()])
        prelabeled = await env.read("item.prelabeled", lambda rs: set(warm) <= {r["item_id"] for r in rs}, timeout=60)
        shown = [r for r in prelabeled if r["item_id"] in warm]
        for r in shown:
            assert r["model_version"] >= 1 and r["spans"] is not None and r["top_k"][0]["label"] == "__spans__"
        serving = max(r["model_version"] for r in shown)
        counts = await _label_until_final(client, tokens, {**cold, **warm}, set(warm), env)
        assert counts["shown_spans"] > 0, "tasks showed the pre-labelled spans"
        finals = {r["item_id"]: r for r in await env.read_all("label.finalized")}
        for item, (_, answer) in warm.items():
            assert sorted((s["start"], s["end"], s["label"]) for s in finals[item]["spans"]) == answer

        # The 12 new finals passed the retrain point again: a newer model, served for the next item.
        models = await env.read("model.updated", lambda rs: any(m["model_version"] > serving for m in rs),
                                timeout=120)
        newest = max(m["model_version"] for m in models)
        versions = []
        for n in range(5):  # the prelabeler swaps models between batches: an item sent meanwhile gets the older one
            await client.ingest_items([pb.IngestItem(project="ner", item_id=f"after-{n}", text="Ana left Oslo today")])
            after = await env.read("item.prelabeled", lambda rs: any(r["item_id"] == f"after-{n}" for r in rs),
                                   timeout=60)
            versions.append(next(r for r in after if r["item_id"] == f"after-{n}")["model_version"])
            if versions[-1] >= newest:
                break
        assert versions[-1] >= newest > serving, versions

        # Export through gRPC: every final with its character offsets, as JSONL and CoNLL.
        rows = [export_row(row) async for row in pb_grpc.ProjectServiceStub(client.channel).ExportFinalLabels(
            pb.ExportFinalLabelsRequest(project="ner"), metadata=client.metadata)]
        by_item = {r["item_id"]: r for r in rows}
        assert set(cold) | set(warm) <= set(by_item)
        text, answer = warm["s31"]
        assert [(s["start"], s["end"], s["label"]) for s in by_item["s31"]["spans"]] == answer
        assert [s["text"] for s in by_item["s31"]["spans"]] == [text[s:e] for s, e, _ in answer]
        write_export("jsonl", rows, TYPES, tmp_path / "ner.jsonl")
        assert len((tmp_path / "ner.jsonl").read_text().splitlines()) == len(rows)
        assert json.loads((tmp_path / "ner.jsonl").read_text().splitlines()[0])["spans"] is not None
        write_export("conll", rows, TYPES, tmp_path / "ner.conll")
        assert "B-location" in (tmp_path / "ner.conll").read_text()
    finally:
        await client.close()
        codes = stack.stop_all()
    assert all(code == 0 for code in codes.values()), f"services did not stop cleanly: {codes}"
