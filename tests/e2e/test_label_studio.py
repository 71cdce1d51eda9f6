"""A real Label Studio (PyPI, SQLite) as the labelling UI of a labelmesh project on the five services.

Label Studio runs from its own cached virtualenv (deploy/local/label-studio.sh). The test signs in as Label Studio
users do, creates personal access tokens through Label Studio's API, then drives only the `labelmesh label-studio`
commands and Label Studio's API: a project, two mapped users, the ML backend connected, tasks synced from what
labelmesh routes to people, predictions retrieved, annotations submitted, one deleted, and the labels final in
labelmesh's export.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from labelmesh.client import GatewayClient
from labelmesh.stack import Stack
from schemas.rpc import gateway_pb2 as pb
from tests.conftest import eventually
from tests.kafka_helpers import Env

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ADMIN = "label-studio-admin-token"
GRPC_PORT = 50191
PROJECT = "lsreviews"
TEXTS = {"ls1": "great product, works perfectly", "ls2": "broke after a day, refund please",
         "ls3": "does what it says"}
TRUTH = {"ls1": "positive", "ls2": "negative", "ls3": "positive"}
PASSWORD = "labelmesh-test-pw-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _up(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


async def _personal_token(base: str, email: str, signup: bool) -> str:
    """Sign up or sign in through Label Studio's own pages, then create a personal access token (/api/token/)."""
    async with httpx.AsyncClient(base_url=base, timeout=30, follow_redirects=True) as http:
        page = "/user/signup/" if signup else "/user/login/"
        await http.get(page)
        csrf = http.cookies["csrftoken"]
        form = {"email": email, "password": PASSWORD, "csrfmiddlewaretoken": csrf}
        answer = await http.post(page, data=form, headers={"Referer": base + page})
        assert answer.status_code == 200 and "sessionid" in http.cookies, answer.text[:500]
        made = await http.post("/api/token/", headers={"X-CSRFToken": http.cookies["csrftoken"],
                                                       "Referer": base + "/"})
        assert made.status_code == 201, made.text
        return made.json()["token"]


def _cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "labelmesh.cli", "label-studio", *args], env=env, cwd=env["WORK"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"label-studio {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


async def test_label_studio_labels_become_final_in_labelmesh(env: Env, tmp_path: Path) -> None:
    subprocess.run(["bash", str(REPO / "deploy/local/label-studio.sh"), "install"], check=True, timeout=900)
    ls_bin = subprocess.run(["bash", str(REPO / "deploy/local/label-studio.sh"), "path"], check=True,
                            capture_output=True, text=True).stdout.strip()
    ls_port, backend_port = _free_port(), _free_port()
    base = f"http://127.0.0.1:{ls_port}"
    admin_email, bob_email = "alice@example.com", "bob@example.com"
    ls_log = (tmp_path / "label-studio.log").open("w")
    ls_env = {**{k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO")},
              "LABEL_STUDIO_BASE_DATA_DIR": str(tmp_path / "ls-data"), "LABEL_STUDIO_USERNAME": admin_email,
              "LABEL_STUDIO_PASSWORD": PASSWORD,
              # Label Studio refuses ML backends and webhooks on loopback addresses unless told otherwise.
              "SSRF_PROTECTION_ENABLED": "false", "USE_DEFAULT_BANNED_SUBNETS": "false"}
    label_studio = subprocess.Popen([ls_bin, "start", "--no-browser", "--host", "127.0.0.1", "--port", str(ls_port),
                                     "--internal-host", "127.0.0.1"],
                                    env=ls_env, stdout=ls_log, stderr=subprocess.STDOUT, start_new_session=True)
    stack = Stack(env={**env.environ(), "LABELMESH_PRELABELER_ENCODER": "hashing",
                       "LABELMESH_GATEWAY_ADMIN_TOKEN": ADMIN, "LABELMESH_GATEWAY_GOLDEN_RATE": "0.0"},
                  log_dir=tmp_path / "logs", port_offset=140, grpc_port=GRPC_PORT)
    backend = None
    admin = GatewayClient(f"127.0.0.1:{GRPC_PORT}", ADMIN)
    try:
        await stack.start_all()
        await eventually(lambda: _up(f"{base}/health"), timeout=240, interval=1.0)
        alice_pat = await _personal_token(base, admin_email, signup=False)
        bob_pat = await _personal_token(base, bob_email, signup=True)

        # labelmesh: a project needing two people per item (no model yet), two annotators, three items.
        await admin.configure_project(PROJECT, ["positive", "negative"], "Is the review positive?", multi_annotators=2)
        alice = await admin.create_annotator("alice", projects=[PROJECT])
        bob = await admin.create_annotator("bob", projects=[PROJECT])
        await admin.ingest_items([pb.IngestItem(project=PROJECT, item_id=i, text=t, metadata={"shop": "web"})
                                  for i, t in TEXTS.items()])
        projects = admin.channel  # the read API's stub on the same channel
        from schemas.rpc import gateway_pb2_grpc as pb_grpc
        read = pb_grpc.ProjectServiceStub(projects)

        async def routed() -> bool:
            stats = await read.GetProjectStats(pb.GetProjectRequest(project=PROJECT), metadata=admin.metadata)
            return stats.open_items == len(TEXTS)

        await eventually(routed, timeout=120)

        work = tmp_path / "bridge"
        work.mkdir()
        cli_env = {**os.environ, **env.environ(), "WORK": str(work), "PYTHONPATH": str(REPO),
                   "LABELMESH_GATEWAY": f"127.0.0.1:{GRPC_PORT}", "LABELMESH_ADMIN_TOKEN": ADMIN,
                   "LABEL_STUDIO_TOKEN": alice_pat, "COLUMNS": "200"}
        out = _cli("init", "--project", PROJECT, "--url", base, env=cli_env)
        ls_project = int(re.search(r"Label Studio project (\d+)", out).group(1))
        _cli("map-user", "--email", admin_email, "--annotator", "alice", "--annotator-token", alice, env=cli_env)
        _cli("map-user", "--email", bob_email, "--annotator", "bob", "--annotator-token", bob, env=cli_env)
        config = json.loads((work / "label-studio.json").read_text())
        assert oct((work / "label-studio.json").stat().st_mode & 0o777) == "0o600"
        assert {u["annotator"] for u in config["users"]} == {"alice", "bob"}

        backend = subprocess.Popen([sys.executable, "-m", "labelmesh.cli", "label-studio", "backend",
                                    "--port", str(backend_port)], env=cli_env, cwd=work,
                                   stdout=(tmp_path / "backend.log").open("w"), stderr=subprocess.STDOUT)
        await eventually(lambda: _up(f"http://127.0.0.1:{backend_port}/health"), timeout=60)
        # One lease per annotator at a time: each sync adds the next task of whoever answered theirs.
        out = _cli("sync", env=cli_env)
        assert "created 2 Label Studio tasks: alice 1, bob 1" in out, out
        assert "created 0 Label Studio tasks" in _cli("sync", env=cli_env)  # nothing answered yet: nothing new
        _cli("connect", "--backend-url", f"http://127.0.0.1:{backend_port}", env=cli_env)

        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            async def bearer(pat: str) -> dict[str, str]:
                access = (await http.post("/api/token/refresh/", json={"refresh": pat})).json()["access"]
                return {"Authorization": f"Bearer {access}"}

            as_alice, as_bob = await bearer(alice_pat), await bearer(bob_pat)

            async def ls_tasks() -> list[dict]:
                body = (await http.get("/api/tasks/", params={"project": ls_project, "fields": "all"},
                                       headers=as_alice)).json()
                return body["tasks"] if isinstance(body, dict) else body

            tasks = await ls_tasks()
            assert len(tasks) == 2
            # Label Studio asks the backend for predictions (the data manager's "Retrieve predictions").
            answer = await http.post("/api/dm/actions", params={"id": "retrieve_tasks_predictions",
                                                                "project": ls_project},
                                     json={"selectedItems": {"all": True, "excluded": []}}, headers=as_alice)
            assert answer.status_code == 200, answer.text
            health = (await http.get(f"http://127.0.0.1:{backend_port}/health")).json()
            assert health["counts"]["predictions"] == 2
            predictions = (await http.get("/api/predictions/", params={"project": ls_project},
                                          headers=as_alice)).json()
            # No model yet (cold start): labelmesh's answer is "no pre-label", with its model version and score.
            assert len(predictions) == 2
            assert {p["model_version"] for p in predictions} == {"labelmesh-no-model"}
            assert all(p["score"] == 0.0 and p["result"] == [] for p in predictions)

            ids: dict[tuple[str, str], int] = {}
            annotated: set[int] = set()
            while len(ids) < 2 * len(TEXTS):
                fresh = [t for t in await ls_tasks() if t["id"] not in annotated]
                assert fresh, f"sync created nothing new after {len(ids)} annotations"
                for task in fresh:
                    who = task["data"]["labelmesh_annotator"]
                    item = task["data"]["labelmesh_item_id"]
                    made = await http.post(f"/api/tasks/{task['id']}/annotations/", headers=as_alice if who == "alice"
                                           else as_bob, json={"result": [{
                                               "from_name": "label", "to_name": "text", "type": "choices",
                                               "value": {"choices": [TRUTH[item]]}}], "lead_time": 4.5})
                    assert made.status_code == 201, made.text
                    ids[(who, item)] = made.json()["id"]
                    annotated.add(task["id"])
                _cli("sync", env=cli_env)
            tasks = await ls_tasks()
            assert len(tasks) == 6 and {t["data"]["labelmesh_item_id"] for t in tasks} == set(TEXTS)

            # An annotation by a user who does not hold the task's lease is refused (bob on alice's task).
            alices = next(t for t in tasks if t["data"]["labelmesh_annotator"] == "alice")
            await http.post(f"/api/tasks/{alices['id']}/annotations/", headers=as_bob, json={"result": [{
                "from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["negative"]}}]})

            async def all_final() -> bool:
                stats = await read.GetProjectStats(pb.GetProjectRequest(project=PROJECT), metadata=admin.metadata)
                return stats.final == len(TEXTS)

            await eventually(all_final, timeout=120)
            health = (await http.get(f"http://127.0.0.1:{backend_port}/health")).json()
            assert health["counts"]["submitted"] == 6 and health["counts"]["refused"] == 1

            # Deleting an annotation in Label Studio flags the item in labelmesh (the submitted label stays).
            gone = await http.delete(f"/api/annotations/{ids[('bob', 'ls3')]}/", headers=as_bob)
            assert gone.status_code == 204, gone.text
            health = (await http.get(f"http://127.0.0.1:{backend_port}/health")).json()
            assert health["counts"]["flagged"] == 1

        export = subprocess.run([sys.executable, "-m", "labelmesh.cli", "export", "--project", PROJECT, "--format",
                                 "jsonl", "--out", str(tmp_path / "out.jsonl")], env=cli_env, capture_output=True,
                                text=True, timeout=120)
        assert export.returncode == 0, export.stderr
        rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
        assert {r["item_id"]: r["label"] for r in rows} == TRUTH
        for row in rows:
            assert sorted(a["annotator_id"] for a in row["annotator_labels"]) == ["alice", "bob"]
            assert row["metadata"] == {"shop": "web"}
    finally:
        if backend is not None:
            backend.terminate()
            backend.wait(timeout=30)
        os.killpg(label_studio.pid, 15)
        label_studio.wait(timeout=60)
        ls_log.close()
        await admin.close()
        stack.stop_all()
