"""The admin commands besides ingest, status and export, as a team runs them against a real gateway: project list
and show, annotator add, rotate, revoke and list, guidelines publish and calibrate."""

from __future__ import annotations

from pathlib import Path

import grpc

from tests.gateway_helpers import LABELS, PROJECT, run_cli, status_of
from tests.kafka_helpers import Env

REPO = Path(__file__).resolve().parents[2]


async def test_projects_annotators_guidelines_and_calibration_from_the_cli(  # type: ignore[no-untyped-def]
        env: Env, gateway, tmp_path: Path) -> None:
    runtime, admin = gateway
    port = runtime.component.port

    async def cli(*args: str) -> str:
        code, out, err = await run_cli(env, port, *args, cwd=REPO)
        assert code == 0, (args, out, err)
        return out

    assert PROJECT in await cli("project", "list")
    shown = await cli("project", "show", PROJECT)
    assert f"labels: {', '.join(LABELS)}" in shown and "guidelines v1" in shown

    token = (await cli("annotator", "add", "ann", "--project", PROJECT)).strip()
    await admin.as_user(token).guidelines(PROJECT)
    rotated = (await cli("annotator", "rotate", "ann")).strip()
    assert rotated != token
    assert await status_of(admin.as_user(token).guidelines(PROJECT)) == grpc.StatusCode.UNAUTHENTICATED
    await admin.as_user(rotated).guidelines(PROJECT)
    await cli("annotator", "add", "bea", "--project", PROJECT)

    (tmp_path / "v2.md").write_text("# v2: sarcasm counts as no\n")
    assert f"{PROJECT}: guidelines v2" in await cli("guidelines", "publish", str(tmp_path / "v2.md"),
                                                    "--project", PROJECT)
    assert (await admin.as_user(rotated).guidelines(PROJECT)).text.startswith("# v2")

    (tmp_path / "items.csv").write_text("id,text\n1,first\n2,second\n3,third\n")
    await cli("ingest", str(tmp_path / "items.csv"), "--project", PROJECT, "--id-column", "id")
    out = await cli("calibrate", "--project", PROJECT, "--n", "2", "--annotator", "ann", "--annotator", "bea",
                    "--session-id", "cal-1")
    assert "session cal-1: 2 items for ann, bea" in out, out
    task = await admin.as_user(rotated).lease(PROJECT)
    assert task is not None and task.session_id == "cal-1"

    assert "revoked ann" in await cli("annotator", "revoke", "ann")
    assert await status_of(admin.as_user(rotated).guidelines(PROJECT)) == grpc.StatusCode.UNAUTHENTICATED
    listed = await cli("annotator", "list")
    assert "revoked" in next(line for line in listed.splitlines() if " ann " in line)
    assert "active" in next(line for line in listed.splitlines() if " bea " in line)
