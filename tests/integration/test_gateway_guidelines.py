"""Guideline versions over a real gRPC channel: an admin publishes, annotators read the current one, and every
submission records the version its annotator was shown."""

from __future__ import annotations

import grpc
import pytest

from schemas.events import Tier
from schemas.rpc import gateway_pb2 as pb
from tests.conftest import eventually
from tests.gateway_helpers import LABELS, PROJECT, routed, status_of
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration


async def test_published_versions_are_served_and_recorded_with_each_label(env: Env, gateway) -> None:  # type: ignore[no-untyped-def]
    runtime, admin = gateway
    configured = await admin.configure_project(PROJECT, LABELS, guidelines="v1", multi_annotators=2)
    assert configured.guideline_version == 1, "the same labels and text again are no new version"
    ann = admin.as_user(await admin.create_annotator("ann"))
    assert (await ann.guidelines(PROJECT)).text == "v1"
    await admin.ingest_items([pb.IngestItem(project=PROJECT, item_id=i, text=f"text {i}") for i in ("x", "y")])
    await env.publish_events([routed("x", Tier.SINGLE, 1), routed("y", Tier.SINGLE, 1)])
    await eventually(lambda: _open_tasks(runtime, 2))

    shown = await ann.lease(PROJECT)
    assert shown.guideline_version == 1
    published = await admin.publish_guidelines(PROJECT, "v2: 'maybe' only when both readings fit")
    assert published.version == 2 and list(published.labels) == LABELS
    assert (await admin.publish_guidelines(PROJECT, published.text)).version == 2, "a retried publish is one version"
    current = await ann.guidelines(PROJECT)
    assert (current.version, current.text) == (2, published.text)
    assert (await ann.guidelines(PROJECT, version=1)).text == "v1", "earlier versions stay readable"
    assert (await ann.lease(PROJECT)).guideline_version == 1, "the running lease keeps what it was shown with"

    await ann.submit(shown.task_id, "yes", "k-x")
    after = await ann.lease(PROJECT)
    assert after.item_id != shown.item_id and after.guideline_version == 2
    await ann.submit(after.task_id, "no", "k-y")
    submitted = await env.read("label.submitted", lambda rs: len(rs) >= 2)
    assert {r["item_id"]: r["guideline_version"] for r in submitted} == {shown.item_id: 1, after.item_id: 2}

    configured = await env.read("project.configured", lambda rs: any(r["guideline_version"] == 2 for r in rs))
    v2 = next(r for r in configured if r["guideline_version"] == 2)
    assert v2["multi_annotators"] == 2 and v2["guidelines"] == published.text, "settings kept, text published"
    stored = await runtime.db["guidelines"].count_documents({"project": PROJECT})
    assert stored == 2

    assert await status_of(ann.publish_guidelines(PROJECT, "v3")) == grpc.StatusCode.PERMISSION_DENIED
    assert await status_of(admin.publish_guidelines(PROJECT, "  ")) == grpc.StatusCode.INVALID_ARGUMENT
    assert await status_of(admin.publish_guidelines("nope", "v1")) == grpc.StatusCode.NOT_FOUND
    assert await status_of(ann.guidelines(PROJECT, version=7)) == grpc.StatusCode.NOT_FOUND
    assert await runtime.db["guidelines"].count_documents({"project": PROJECT}) == stored


async def _open_tasks(runtime, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await runtime.db["tasks"].count_documents({"status": "open"}) >= n
