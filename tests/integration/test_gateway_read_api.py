"""The gateway's read API and the admin CLI against a real gateway, Kafka and FerretDB."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from schemas.events import LabelFinalized, Provenance, Tier
from schemas.rpc import gateway_pb2 as pb
from schemas.rpc import gateway_pb2_grpc as pb_grpc
from tests.conftest import eventually
from tests.gateway_helpers import PROJECT, run_cli
from tests.gateway_helpers import routed as _routed
from tests.kafka_helpers import Env

REPO = Path(__file__).resolve().parents[2]


def _final(item_id: str, label: str, provenance: Provenance = Provenance.SINGLE_REVIEW) -> LabelFinalized:
    return LabelFinalized(producer="test", project=PROJECT, item_id=item_id, label=label, version=1,
                          provenance=provenance, confidence=0.9, human_labels=1, expert_labels=0, model_version=3,
                          verified=True)


async def _export(stub: pb_grpc.ProjectServiceStub, md: tuple, cursor: str = "") -> list[pb.FinalLabel]:
    return [r async for r in stub.ExportFinalLabels(pb.ExportFinalLabelsRequest(project=PROJECT, cursor=cursor),
                                                    metadata=md)]


async def test_read_api_serves_progress_items_annotators_and_a_resumable_export(env: Env, gateway) -> None:  # type: ignore[no-untyped-def]
    runtime, admin = gateway
    stub = pb_grpc.ProjectServiceStub(admin.channel)
    md = admin.metadata
    ann = admin.as_user(await admin.create_annotator("ann"))
    await admin.ingest_items([pb.IngestItem(project=PROJECT, item_id=f"i{n}", text=f"text {n}",
                                            metadata={"row": str(n), "lang": "en"}) for n in range(3)])
    # i0 on model v3's pre-label; i1 and i2 before any model (cold start)
    await env.publish_events([_routed(f"i{n}", Tier.SINGLE, 1).model_copy(
        update={"model_version": 3 if n == 0 else None}) for n in range(3)])
    task = await eventually(lambda: ann.lease(PROJECT))
    await ann.submit(task.task_id, "no", key="k1")
    await env.publish_events([_final(task.item_id, "no"), *[
        _final(f"i{n}", "yes", Provenance.AUTO) for n in range(3) if f"i{n}" != task.item_id]])

    async def all_final() -> list[pb.FinalLabel]:
        rows = await _export(stub, md)
        return rows if len(rows) == 3 and any(r.annotator_labels for r in rows) else []

    rows = await eventually(all_final)
    assert sorted(r.item_id for r in rows) == ["i0", "i1", "i2"]
    labelled = next(r for r in rows if r.item_id == task.item_id)
    assert [(a.annotator_id, a.label) for a in labelled.annotator_labels] == [("ann", "no")]
    assert (labelled.label, labelled.provenance, labelled.model_version) == ("no", "single_review", 3)
    assert dict(labelled.metadata) == {"row": task.item_id[1:], "lang": "en"}
    assert labelled.text == f"text {task.item_id[1:]}"
    resumed = await _export(stub, md, cursor=rows[0].cursor)
    assert [r.item_id for r in resumed] == [r.item_id for r in rows[1:]]

    stats = await stub.GetProjectStats(pb.GetProjectRequest(project=PROJECT), metadata=md)
    assert (stats.ingested, stats.final, stats.human_labels, stats.open_items) == (3, 3, 1, 0)
    assert dict(stats.routed) == {"single": 3} and stats.prelabelled == 1
    assert dict(stats.final_by_provenance) == {"single_review": 1, "auto": 2}

    item = await stub.GetItem(pb.GetItemRequest(project=PROJECT, item_id=task.item_id), metadata=md)
    assert (item.final.label, item.metadata["lang"]) == ("no", "en")
    projects = await stub.ListProjects(pb.ListProjectsRequest(), metadata=md)
    assert [p.project for p in projects.projects] == [PROJECT]
    annotators = await stub.ListAnnotators(pb.ListAnnotatorsRequest(page_size=10), metadata=md)
    assert [(a.annotator_id, a.revoked) for a in annotators.annotators] == [("ann", False)]


async def test_read_api_authorises_bounds_fields_and_revokes_tokens(gateway) -> None:  # type: ignore[no-untyped-def]
    _, admin = gateway
    stub = pb_grpc.ProjectServiceStub(admin.channel)
    token = await admin.create_annotator("ann")
    as_annotator = (("authorization", f"Bearer {token}"),)
    try:
        await stub.ListProjects(pb.ListProjectsRequest(), metadata=as_annotator)
        raise AssertionError("an annotator listed projects")
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.PERMISSION_DENIED

    try:
        await stub.GetItem(pb.GetItemRequest(project="p" * 300, item_id=""), metadata=admin.metadata)
        raise AssertionError("an over-long project id was accepted")
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        bad = error_details_pb2.BadRequest()
        assert rpc_status.from_call(exc).details[0].Unpack(bad)
        assert [v.field for v in bad.field_violations] == ["project", "item_id"]

    rotated = await stub.RotateAnnotatorToken(pb.RevokeAnnotatorRequest(annotator_id="ann"), metadata=admin.metadata)
    assert rotated.token != token
    await admin.as_user(rotated.token).guidelines(PROJECT)
    await stub.RevokeAnnotator(pb.RevokeAnnotatorRequest(annotator_id="ann"), metadata=admin.metadata)
    try:
        await admin.as_user(rotated.token).guidelines(PROJECT)
        raise AssertionError("a revoked token still works")
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAUTHENTICATED


async def _cli(env: Env, port: int, *args: str) -> tuple[int, str, str]:
    return await run_cli(env, port, *args, cwd=REPO)


async def test_cli_creates_ingests_refuses_a_bad_file_and_exports(env: Env, gateway, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runtime, admin = gateway
    port = runtime.component.port
    (tmp_path / "labels.txt").write_text("pos\nneg\n")
    (tmp_path / "guide.md").write_text("# Sentiment\n")
    code, out, err = await _cli(env, port, "project", "create", "films", "--labels", str(tmp_path / "labels.txt"),
                                "--guidelines", str(tmp_path / "guide.md"))
    assert code == 0, err
    code, token, err = await _cli(env, port, "annotator", "add", "ann", "--project", "films")
    assert code == 0 and len(token.strip()) > 20, err

    bad = tmp_path / "bad.csv"
    bad.write_text("id,text,gold\n1,great,pos\n2,awful,terrible\n")
    code, out, err = await _cli(env, port, "ingest", str(bad), "--project", "films", "--id-column", "id",
                                "--golden-column", "gold")
    assert code == 2 and "row 2: golden label 'terrible'" in err, (out, err)
    assert await runtime.db["items"].count_documents({"project": "films"}) == 0

    good = tmp_path / "films.csv"
    good.write_text("id,text,year\n1,great film,1999\n2,awful film,2001\n")
    for _ in range(2):  # a re-run sends the same ids again: nothing new
        code, out, err = await _cli(env, port, "ingest", str(good), "--project", "films", "--id-column", "id")
        assert code == 0 and "ingested 2 items" in out, (out, err)
    assert await runtime.db["items"].count_documents({"project": "films"}) == 2

    await env.publish_events([
        LabelFinalized(producer="test", project="films", item_id=i, label=label, version=1, provenance=Provenance.AUTO,
                       confidence=0.8, human_labels=0, expert_labels=0, model_version=1, verified=False)
        for i, label in (("1", "pos"), ("2", "neg"))])

    async def status_final() -> bool:
        code, out, _ = await _cli(env, port, "status", "--project", "films")
        return code == 0 and "final" in out and "2 (auto 2)" in out

    await eventually(status_final, timeout=60)
    out_file = tmp_path / "films.jsonl"
    code, out, err = await _cli(env, port, "export", "--project", "films", "--format", "jsonl", "--out", str(out_file))
    assert code == 0, err
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert sorted((r["item_id"], r["label"], r["metadata"]["year"]) for r in rows) == [
        ("1", "pos", "1999"), ("2", "neg", "2001")]


async def test_a_request_with_several_problems_names_each_field(  # type: ignore[no-untyped-def]
        env: Env, gateway, tmp_path: Path) -> None:
    runtime, admin = gateway
    try:
        await admin.admin.ConfigureProject(pb.ConfigureProjectRequest(project="films", labels=["pos"],
                                                                      multi_annotators=12), metadata=admin.metadata)
        raise AssertionError("a project with one label and 12 annotators per item was configured")
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        bad = error_details_pb2.BadRequest()
        assert rpc_status.from_call(exc).details[0].Unpack(bad)
        assert [v.field for v in bad.field_violations] == ["labels", "multi_annotators"]

    (tmp_path / "labels.txt").write_text("pos\n")
    (tmp_path / "guide.md").write_text("# Sentiment\n")
    code, out, err = await _cli(env, runtime.component.port, "project", "create", "films", "--labels",
                                str(tmp_path / "labels.txt"), "--guidelines", str(tmp_path / "guide.md"),
                                "--multi-annotators", "12")
    assert code == 1, (out, err)
    assert "  labels: a project needs at least two labels" in out + err
    assert "  multi_annotators: multi_annotators must be between 2 and 9" in out + err


async def test_lists_page_and_an_export_stops_at_its_limit(env: Env, gateway) -> None:  # type: ignore[no-untyped-def]
    _, admin = gateway
    stub = pb_grpc.ProjectServiceStub(admin.channel)
    md = admin.metadata
    await admin.configure_project("b", ["person", "place"], guidelines="g", task_type="spans")
    await admin.configure_project("c", ["x", "y"], guidelines="g")
    for name in ("ann1", "ann2", "ann3"):
        await admin.create_annotator(name)
    first = await stub.ListProjects(pb.ListProjectsRequest(page_size=2), metadata=md)
    rest = await stub.ListProjects(pb.ListProjectsRequest(page_size=2, page_token=first.next_page_token), metadata=md)
    assert [p.project for p in first.projects] == ["b", "c"] and first.next_page_token == "c"
    assert ([p.project for p in rest.projects], rest.next_page_token) == ([PROJECT], "")
    # Each project says its task type, so a tool knows whether its labels are classes or entity types.
    assert [p.task_type for p in [*first.projects, *rest.projects]] == ["spans", "classification", "classification"]
    assert (await stub.GetProject(pb.GetProjectRequest(project="b"), metadata=md)).task_type == "spans"
    pages, token = [], ""
    while True:
        page = await stub.ListAnnotators(pb.ListAnnotatorsRequest(page_size=2, page_token=token), metadata=md)
        pages.append([a.annotator_id for a in page.annotators])
        if not (token := page.next_page_token):
            break
    assert pages == [["ann1", "ann2"], ["ann3"]]

    await admin.ingest_items([pb.IngestItem(project=PROJECT, item_id=f"i{n}", text=f"text {n}") for n in range(3)])
    await env.publish_events([_final(f"i{n}", "yes", Provenance.AUTO) for n in range(3)])
    await eventually(lambda: _counted(stub, md, 3))
    limited = [r async for r in stub.ExportFinalLabels(pb.ExportFinalLabelsRequest(project=PROJECT, limit=2),
                                                       metadata=md)]
    assert len(limited) == 2
    after = await _export(stub, md, cursor=limited[-1].cursor)
    assert len(after) == 1 and {r.item_id for r in [*limited, *after]} == {"i0", "i1", "i2"}


async def _counted(stub: pb_grpc.ProjectServiceStub, md: tuple, n: int) -> bool:
    return len(await _export(stub, md)) == n
