"""A real Label Studio (PyPI, SQLite) as the labelling UI of a labelmesh project on the five services.

Label Studio runs from its own cached virtualenv (`bash deploy/local/label-studio.sh install`, which
deploy/local/test.sh runs; without it this test fails saying so). The test signs up and signs in as Label Studio
users do, creates personal access tokens through Label Studio's API, then drives only `labelmesh` commands and
Label Studio's API: model v1 bootstrapped, items pre-labelled by it, a Label Studio project, two mapped users, tasks
synced from what labelmesh routes to people (with the pre-label, its score and model version as the prediction),
an annotation made before the backend was connected submitted by the sync, once however often it runs, the rest
through the backend's webhook, a wrong user's annotation refused, an edit and a deletion flagged, and the labels
final in labelmesh's export.
"""

from __future__ import annotations

import csv
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
from schemas.rpc import gateway_pb2_grpc as pb_grpc
from tests.conftest import eventually
from tests.kafka_helpers import Env

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ADMIN = "label-studio-admin-token"
GRPC_PORT = 50191
PROJECT = "lsreviews"
TEXTS = {"ls1": "great product, works perfectly, love it", "ls2": "broke after a day, awful, refund please",
         "ls3": "does what it says, really happy"}
TRUTH = {"ls1": "positive", "ls2": "negative", "ls3": "positive"}
PASSWORD = "labelmesh-test-pw-1"
GOOD = ["love it", "works perfectly", "great value", "really happy", "excellent quality", "would buy again"]
BAD = ["broke after a day", "awful", "refund please", "waste of money", "stopped working", "very disappointed"]


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
    done = subprocess.run([sys.executable, "-m", "labelmesh.cli", *args], env=env, cwd=env["WORK"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"labelmesh {' '.join(args[:2])} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _label_studio_python() -> str:
    """Label Studio's virtualenv's python (run as `python -m label_studio.server`); fails the test without it."""
    python = subprocess.run(["bash", str(REPO / "deploy/local/label-studio.sh"), "python"], check=True,
                            capture_output=True, text=True).stdout.strip()
    if not os.access(python, os.X_OK) or subprocess.run([python, "-c", "import label_studio"],
                                                        capture_output=True).returncode != 0:
        pytest.fail(f"Label Studio is not installed (no label_studio for {python}): run `bash "
                    "deploy/local/label-studio.sh install` (deploy/local/test.sh does)", pytrace=False)
    return python


def _seed(path: Path) -> int:
    """A small labelled file for `labelmesh bootstrap`: model v1 is trained on it."""
    rows = [(f"seed-{label}-{i}-{j}", f"{a}, {b}", label) for label, words in (("positive", GOOD), ("negative", BAD))
            for i, a in enumerate(words) for j, b in enumerate(words) if i != j]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "text", "label"])
        writer.writerows(rows)
    return len(rows)


async def test_label_studio_labels_become_final_in_labelmesh(env: Env, tmp_path: Path) -> None:
    ls_python = _label_studio_python()
    ls_port, backend_port = _free_port(), _free_port()
    base = f"http://127.0.0.1:{ls_port}"
    admin_email, bob_email = "alice@example.com", "bob@example.com"
    ls_log = (tmp_path / "label-studio.log").open("w")
    ls_env = {**{k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO") and k != "HOST"},
              "LABEL_STUDIO_BASE_DATA_DIR": str(tmp_path / "ls-data"), "LABEL_STUDIO_USERNAME": admin_email,
              "LABEL_STUDIO_PASSWORD": PASSWORD,
              # Nothing leaves the machine: no PyPI version check at start (10 s where offline), no analytics.
              "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false",
              # Label Studio refuses ML backends and webhooks on loopback addresses unless told otherwise.
              "SSRF_PROTECTION_ENABLED": "false", "USE_DEFAULT_BANNED_SUBNETS": "false"}
    label_studio = subprocess.Popen([ls_python, "-m", "label_studio.server", "start", "--no-browser", "--host",
                                     "127.0.0.1", "--port", str(ls_port), "--internal-host", "127.0.0.1"],
                                    env=ls_env, stdout=ls_log, stderr=subprocess.STDOUT, start_new_session=True)
    # The expert margin and out-of-distribution floor off: a two-label model this small puts items near 50/50, and
    # this test's annotators are not experts (routing's tiers have tests of their own).
    stack = Stack(env={**env.environ(), "LABELMESH_PRELABELER_ENCODER": "hashing",
                       "LABELMESH_GATEWAY_ADMIN_TOKEN": ADMIN, "LABELMESH_GATEWAY_GOLDEN_RATE": "0.0",
                       "LABELMESH_TRAINER_FIRST_MODEL_MIN": "40", "LABELMESH_ROUTER_EXPERT_MARGIN": "0.0",
                       "LABELMESH_ROUTER_OOD_SIMILARITY_FLOOR": "-1.0"},
                  log_dir=tmp_path / "logs", port_offset=140, grpc_port=GRPC_PORT)
    backend = None
    admin = GatewayClient(f"127.0.0.1:{GRPC_PORT}", ADMIN)
    read = pb_grpc.ProjectServiceStub(admin.channel)

    async def stats() -> pb.ProjectStats:
        return await read.GetProjectStats(pb.GetProjectRequest(project=PROJECT), metadata=admin.metadata)

    try:
        await stack.start_all()
        work = tmp_path / "bridge"
        work.mkdir()
        cli_env = {**os.environ, **env.environ(), "WORK": str(work), "PYTHONPATH": str(REPO),
                   "LABELMESH_GATEWAY": f"127.0.0.1:{GRPC_PORT}", "LABELMESH_ADMIN_TOKEN": ADMIN, "COLUMNS": "200"}

        # labelmesh: a project, two annotators, model v1 from a seed file, three new items pre-labelled by it.
        await admin.configure_project(PROJECT, ["positive", "negative"], "Is the review positive?", multi_annotators=2)
        alice = await admin.create_annotator("alice", projects=[PROJECT])
        bob = await admin.create_annotator("bob", projects=[PROJECT])
        seeds = _seed(work / "seed.csv")
        out = _cli("bootstrap", str(work / "seed.csv"), "--project", PROJECT, "--gateway", f"127.0.0.1:{GRPC_PORT}",
                   "--timeout", "150", env=cli_env)
        assert f"ingested {seeds} of {seeds} trusted rows" in out and "model v1 trained on" in out, out
        await admin.ingest_items([pb.IngestItem(project=PROJECT, item_id=i, text=t, metadata={"shop": "web"})
                                  for i, t in TEXTS.items()])
        routed = await env.read("item.routed", lambda rs: {r["item_id"] for r in rs} >= TEXTS.keys(), timeout=120)
        tiers = {r["item_id"]: r["tier"] for r in routed if r["item_id"] in TEXTS}
        for_people = {i for i, tier in tiers.items() if tier != "auto"}
        assert for_people, f"routing sent nothing to people ({tiers}): nothing to label in Label Studio"
        prelabels = {r["item_id"]: r for r in await env.read_all("item.prelabeled") if r["item_id"] in TEXTS}
        assert {p["model_version"] for p in prelabels.values()} == {1}

        await eventually(lambda: _up(f"{base}/health"), timeout=240, interval=1.0)
        alice_pat = await _personal_token(base, admin_email, signup=False)
        bob_pat = await _personal_token(base, bob_email, signup=True)
        cli_env["LABEL_STUDIO_TOKEN"] = alice_pat
        out = _cli("label-studio", "init", "--project", PROJECT, "--url", base, env=cli_env)
        ls_project = int(re.search(r"Label Studio project (\d+)", out).group(1))
        _cli("label-studio", "map-user", "--email", admin_email, "--annotator", "alice", "--annotator-token", alice,
             env=cli_env)
        _cli("label-studio", "map-user", "--email", bob_email, "--annotator", "bob", "--annotator-token", bob,
             env=cli_env)
        config = json.loads((work / "label-studio.json").read_text())
        assert oct((work / "label-studio.json").stat().st_mode & 0o777) == "0o600"
        assert {u["annotator"] for u in config["users"]} == {"alice", "bob"}

        backend = subprocess.Popen([sys.executable, "-m", "labelmesh.cli", "label-studio", "backend",
                                    "--port", str(backend_port)], env=cli_env, cwd=work,
                                   stdout=(tmp_path / "backend.log").open("w"), stderr=subprocess.STDOUT)
        await eventually(lambda: _up(f"http://127.0.0.1:{backend_port}/health"), timeout=60)
        # One lease per annotator at a time: each sync adds the next task of whoever answered theirs.
        out = _cli("label-studio", "sync", env=cli_env)
        assert "created 2 Label Studio tasks: alice 1, bob 1" in out, out
        assert "created 0 Label Studio tasks" in _cli("label-studio", "sync", env=cli_env)  # nothing answered yet

        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            async def bearer(pat: str) -> dict[str, str]:
                access = (await http.post("/api/token/refresh/", json={"refresh": pat})).json()["access"]
                return {"Authorization": f"Bearer {access}"}

            as_user = {"alice": await bearer(alice_pat), "bob": await bearer(bob_pat)}

            async def ls_tasks() -> list[dict]:
                body = (await http.get("/api/tasks/", params={"project": ls_project, "fields": "all"},
                                       headers=as_user["alice"])).json()
                return body["tasks"] if isinstance(body, dict) else body

            async def annotate(task: dict, who: str, label: str) -> int:
                made = await http.post(f"/api/tasks/{task['id']}/annotations/", headers=as_user[who], json={
                    "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                "value": {"choices": [label]}}], "lead_time": 4.5})
                assert made.status_code == 201, made.text
                return made.json()["id"]

            # Each task carries labelmesh's pre-label from model v1 as its prediction: top label, score, version.
            tasks = await ls_tasks()
            assert {t["data"]["labelmesh_item_id"] for t in tasks} <= for_people
            for task in tasks:
                prelabel = prelabels[task["data"]["labelmesh_item_id"]]
                top = max(prelabel["top_k"], key=lambda p: p["probability"])
                [prediction] = task["predictions"]
                assert prediction["model_version"] == "labelmesh-v1"
                assert prediction["score"] == pytest.approx(top["probability"], abs=1e-5)
                assert prediction["result"][0]["value"]["choices"] == [top["label"]]

            # Alice labels before the backend is connected (no webhook yet): the sync submits it, once.
            ids: dict[tuple[str, str], int] = {}
            first = next(t for t in tasks if t["data"]["labelmesh_annotator"] == "alice")
            item = first["data"]["labelmesh_item_id"]
            ids[("alice", item)] = await annotate(first, "alice", TRUTH[item])
            out = _cli("label-studio", "sync", env=cli_env)
            assert "annotations from Label Studio: 1 submitted" in out, out
            out = _cli("label-studio", "sync", env=cli_env)
            assert "annotations from Label Studio" not in out, out  # the ledger holds it: nothing submitted twice
            history = await admin.history(PROJECT, item)
            assert sum(e.kind == "label_submitted" for e in history.entries) == 1, history

            _cli("label-studio", "connect", "--backend-url", f"http://127.0.0.1:{backend_port}", env=cli_env)
            # Label Studio asks the backend for predictions too (the data manager's "Retrieve predictions").
            answer = await http.post("/api/dm/actions", params={"id": "retrieve_tasks_predictions",
                                                                "project": ls_project},
                                     json={"selectedItems": {"all": True, "excluded": []}}, headers=as_user["alice"])
            assert answer.status_code == 200, answer.text
            health = (await http.get(f"http://127.0.0.1:{backend_port}/health")).json()
            assert health["counts"]["predictions"] >= 1
            predictions = (await http.get("/api/predictions/", params={"project": ls_project},
                                          headers=as_user["alice"])).json()
            assert {p["model_version"] for p in predictions} == {"labelmesh-v1"}

            # The rest through Label Studio's webhook; the sync feeds each annotator their next task.
            annotated = {first["id"]}

            async def next_tasks() -> list[dict] | bool | None:
                """Tasks nobody answered yet (syncing for them if there are none), or True when all is final."""
                fresh = [t for t in await ls_tasks() if t["id"] not in annotated]
                if fresh:
                    return fresh
                if (await stats()).open_items == 0:
                    return True
                _cli("label-studio", "sync", env=cli_env)
                return None

            while (fresh := await eventually(next_tasks, timeout=120, interval=1.0)) is not True:
                for task in fresh:
                    who, item = task["data"]["labelmesh_annotator"], task["data"]["labelmesh_item_id"]
                    ids[(who, item)] = await annotate(task, who, TRUTH[item])
                    annotated.add(task["id"])
                await eventually(lambda: _counted(backend_port, "submitted", len(annotated) - 1), timeout=30)
            tasks = await ls_tasks()
            assert {t["data"]["labelmesh_item_id"] for t in tasks} == for_people
            assert len(tasks) == len(annotated)

            # An annotation by a user who does not hold the task's lease is refused (bob on alice's task), by the
            # webhook and by the sync, which submits nothing else: everything else is in the ledger.
            alices = next(t for t in tasks if t["data"]["labelmesh_annotator"] == "alice")
            wrong = await annotate(alices, "bob", "negative")
            await eventually(lambda: _counted(backend_port, "refused", 1), timeout=30)
            assert await _counted(backend_port, "submitted", len(annotated) - 1)
            out = _cli("label-studio", "sync", env=cli_env)
            assert "annotations from Label Studio: 1 refused" in out and f"refused annotation {wrong}:" in out, out
            assert "is leased to 'alice'" in out, out

            # Editing a submitted label in Label Studio cannot replace it in labelmesh: the item is flagged, once.
            (who, item), edited = next(iter(ids.items()))
            other = "negative" if TRUTH[item] == "positive" else "positive"
            patched = await http.patch(f"/api/annotations/{edited}/", headers=as_user[who], json={"result": [{
                "from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [other]}}]})
            assert patched.status_code == 200, patched.text
            await eventually(lambda: _counted(backend_port, "flagged", 1), timeout=30)
            # Deleting one flags its item too (the submitted label stays).
            (who, item), deleted = list(ids.items())[-1]
            gone = await http.delete(f"/api/annotations/{deleted}/", headers=as_user[who])
            assert gone.status_code == 204, gone.text
            await eventually(lambda: _counted(backend_port, "flagged", 2), timeout=30)

        _cli("export", "--project", PROJECT, "--format", "jsonl", "--out", str(tmp_path / "out.jsonl"), env=cli_env)
        rows = {r["item_id"]: r for r in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())
                if r["item_id"] in TEXTS}
        assert {i: r["label"] for i, r in rows.items() if i in for_people} == {i: TRUTH[i] for i in for_people}
        for item_id, row in rows.items():
            labellers = sorted(a["annotator_id"] for a in row["annotator_labels"])
            assert labellers == sorted(who for who, i in ids if i == item_id), row  # one label per annotation
            assert row["metadata"] == {"shop": "web"} and row["model_version"] == 1
    finally:
        if backend is not None:
            backend.terminate()
            backend.wait(timeout=30)
        os.killpg(label_studio.pid, 15)
        label_studio.wait(timeout=60)
        ls_log.close()
        await admin.close()
        stack.stop_all()


async def _counted(port: int, what: str, n: int) -> bool:
    async with httpx.AsyncClient(timeout=5) as http:
        return (await http.get(f"http://127.0.0.1:{port}/health")).json()["counts"][what] == n
