"""The gateway's authorisation holes (issue 21, items 6, 8, 9 and 10), each against a real gateway, Kafka and FerretDB:
ingest is an admin's, a stored item is never overwritten, an annotator works only in their projects and flags only
what they were shown, a re-issued token keeps qc's suspension, and the gateway will not start on public secrets."""

from __future__ import annotations

import os
import subprocess
import sys

import grpc
import pytest

from schemas.events import FlagKind, FlagSubject, QcFlagged, Tier
from schemas.keys import item_key
from schemas.rpc import gateway_pb2 as pb
from schemas.rpc import gateway_pb2_grpc as pb_grpc
from services.gateway.settings import DEFAULT_ADMIN_TOKEN
from tests.conftest import eventually
from tests.gateway_helpers import PROJECT, free_port, routed, status_of
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration
S = grpc.StatusCode


async def test_re_ingesting_an_id_is_a_no_op_with_the_same_content_and_refused_with_other(gateway) -> None:  # type: ignore[no-untyped-def]
    runtime, admin = gateway
    first = pb.IngestItem(project=PROJECT, item_id="i1", text="the original text", golden_label="yes")
    assert (await admin.ingest_items([first])).accepted == 1
    stored = await runtime.db["items"].find_one({"_id": item_key(PROJECT, "i1")})

    again = await admin.ingest_items([first])  # a client retry: the same content
    assert list(again.item_ids) == ["i1"]
    for changed in (pb.IngestItem(project=PROJECT, item_id="i1", text="another text", golden_label="yes"),
                    pb.IngestItem(project=PROJECT, item_id="i1", text="the original text")):  # golden answer cleared
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await admin.ingest_items([pb.IngestItem(project=PROJECT, item_id="fresh", text="new"), changed])
        assert info.value.code() == S.ALREADY_EXISTS and "i1" in info.value.details()
    assert await runtime.db["items"].find_one({"_id": item_key(PROJECT, "i1")}) == stored
    assert await runtime.db["items"].find_one({"_id": item_key(PROJECT, "fresh")}) is None  # refused requests ingest nothing


async def test_an_annotator_cannot_ingest(gateway) -> None:  # type: ignore[no-untyped-def]
    runtime, admin = gateway
    ann = admin.as_user(await admin.create_annotator("ann"))
    code = await status_of(ann.ingest_items([pb.IngestItem(project=PROJECT, item_id="planted", text="x")]))
    assert code == S.PERMISSION_DENIED
    assert await runtime.db["items"].count_documents({}) == 0


async def test_annotators_lease_and_flag_only_in_their_projects(env: Env, gateway) -> None:  # type: ignore[no-untyped-def]
    runtime, admin = gateway
    await admin.configure_project("other", ["yes", "no"])
    inside = admin.as_user(await admin.create_annotator("inside", projects=[PROJECT]))
    outside = admin.as_user(await admin.create_annotator("outside", projects=["other"]))
    await admin.ingest_items([pb.IngestItem(project=PROJECT, item_id=i, text=f"text {i}") for i in ("i1", "i2")])
    await env.publish_events([routed("i1", Tier.SINGLE, 1)])

    assert await status_of(outside.lease(PROJECT)) == S.PERMISSION_DENIED
    task = await eventually(lambda: inside.lease(PROJECT))
    assert task.item_id == "i1"
    assert await status_of(outside.flag(PROJECT, "looks wrong", item_id="i1")) == S.PERMISSION_DENIED
    # Nor the guidelines of a project they do not belong to, with the same answer whether it exists or not.
    assert await status_of(outside.flag(PROJECT, "the guidelines are wrong")) == S.PERMISSION_DENIED
    assert await status_of(outside.flag("no-such-project", "the guidelines are wrong")) == S.PERMISSION_DENIED

    # Flags do not tell an annotator which items exist: an existing item they never leased and an id that exists
    # nowhere get the same answer. The item they hold can be flagged.
    answers = []
    for item_id in ("i2", "no-such-item"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await inside.flag(PROJECT, "looks wrong", item_id=item_id)
        answers.append((info.value.code(), info.value.details().replace(item_id, "<id>")))
    assert answers[0] == answers[1] and answers[0][0] == S.PERMISSION_DENIED
    assert await inside.flag(PROJECT, "looks wrong", item_id="i1")
    assert await admin.flag(PROJECT, "an admin flags anything", item_id="i2")
    assert await status_of(admin.flag(PROJECT, "unknown", item_id="no-such-item")) == S.NOT_FOUND


async def test_an_annotator_without_projects_is_refused(gateway) -> None:  # type: ignore[no-untyped-def]
    runtime, admin = gateway
    assert await status_of(admin.create_annotator("nobody", projects=())) == S.INVALID_ARGUMENT
    assert await runtime.db["annotators"].find_one({"_id": "nobody"}) is None


async def test_re_issuing_a_token_does_not_lift_a_suspension(env: Env, gateway) -> None:  # type: ignore[no-untyped-def]
    runtime, admin = gateway
    old = admin.as_user(await admin.create_annotator("ann"))
    await env.publish_events([QcFlagged(producer="test", project=PROJECT, subject=FlagSubject.ANNOTATOR, subject_id="ann",
                                        kind=FlagKind.ANNOTATOR_SUSPENDED, message="golden accuracy too low")])

    async def suspended() -> bool:
        try:
            await old.guidelines(PROJECT)
        except grpc.aio.AioRpcError as exc:
            return exc.code() == S.PERMISSION_DENIED
        return False

    await eventually(suspended)
    new = admin.as_user(await admin.create_annotator("ann"))
    assert await status_of(new.lease(PROJECT)) == S.PERMISSION_DENIED
    assert await status_of(old.lease(PROJECT)) == S.UNAUTHENTICATED  # the old token is gone


@pytest.mark.parametrize("secret", ["admin token", "golden salt"])
def test_the_gateway_refuses_to_start_on_a_public_secret_outside_dev_mode(env: Env, secret: str) -> None:
    environ = {**os.environ, **env.environ(), "LABELMESH_GATEWAY_GRPC_PORT": str(free_port()),
               "LABELMESH_GATEWAY_HTTP_PORT": str(free_port()), "LABELMESH_GATEWAY_ADMIN_TOKEN": "a-real-secret",
               "LABELMESH_GATEWAY_DEV_MODE": "0"}
    if secret == "admin token":
        environ["LABELMESH_GATEWAY_ADMIN_TOKEN"] = DEFAULT_ADMIN_TOKEN
    else:
        environ["LABELMESH_GATEWAY_GOLDEN_SALT"] = ""
    done = subprocess.run([sys.executable, "-m", "labelmesh.cli", "run", "gateway"], env=environ,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "refuses to start" in done.stderr and secret in done.stderr, done.stderr[-2000:]


async def test_a_token_past_its_expiry_is_unauthenticated(gateway) -> None:  # type: ignore[no-untyped-def]
    runtime, admin = gateway
    gw = runtime.component.gw
    now_ms = int(gw.clock() * 1000)
    assert await status_of(admin.create_annotator("late", expires_unix_ms=now_ms - 1)) == S.INVALID_ARGUMENT
    expiring = admin.as_user(await admin.create_annotator("temp", expires_unix_ms=now_ms + 60_000))
    forever = admin.as_user(await admin.create_annotator("perm"))
    listed = await pb_grpc.ProjectServiceStub(admin.channel).ListAnnotators(pb.ListAnnotatorsRequest(),
                                                                            metadata=admin.metadata)
    assert {a.annotator_id: a.expires_unix_ms for a in listed.annotators} == {"temp": now_ms + 60_000, "perm": 0}
    assert await expiring.guidelines(PROJECT)  # before its expiry it works

    gw.clock = lambda: now_ms / 1000 + 60  # the injected clock reaches the expiry
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await expiring.guidelines(PROJECT)
    assert info.value.code() == S.UNAUTHENTICATED and "expired" in info.value.details()
    assert await forever.guidelines(PROJECT)
    assert await status_of(expiring.lease(PROJECT)) == S.UNAUTHENTICATED

    renewed = admin.as_user(await admin.create_annotator("temp", expires_unix_ms=now_ms + 120_000))
    assert await renewed.guidelines(PROJECT)  # a new token, a new expiry


async def test_token_lookup_is_a_unique_index(gateway) -> None:  # type: ignore[no-untyped-def]
    """Every call finds its caller by token hash: without an index FerretDB reads every annotator per call, and
    without uniqueness two annotators could hold one token."""
    runtime, admin = gateway
    await admin.create_annotator("ann")
    indexes = await runtime.db["annotators"].index_information()
    assert any(spec["key"] == [("token_sha256", 1)] and spec.get("unique") for spec in indexes.values()), indexes
