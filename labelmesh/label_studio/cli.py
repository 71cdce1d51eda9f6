"""`labelmesh label-studio ...`: init, map-user, backend, connect, sync (registered by labelmesh.admin_cli)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import grpc
import typer
import uvicorn

from labelmesh.label_studio import mapping
from labelmesh.label_studio.api import LabelStudio, LabelStudioError
from labelmesh.label_studio.config import BridgeConfig, MappedUser

app = typer.Typer(help="Label Studio as the labelling UI: project, user mapping, ML backend, task sync.",
                  no_args_is_help=True)
CONFIG = typer.Option(Path("label-studio.json"), "--config", help="the bridge's configuration file")
LS_TOKEN = typer.Option(..., "--ls-token", envvar="LABEL_STUDIO_TOKEN",
                        help="a Label Studio personal access token (LABEL_STUDIO_TOKEN)")


def _run(coro_factory):  # type: ignore[no-untyped-def]
    try:
        return asyncio.run(coro_factory())
    except LabelStudioError as exc:
        typer.echo(f"error: Label Studio: {exc}", err=True)
        raise typer.Exit(1) from exc
    except grpc.aio.AioRpcError as exc:
        typer.echo(f"error: labelmesh gateway: {exc.code().name}: {exc.details()}", err=True)
        raise typer.Exit(1) from exc


async def _with_ls(url: str, token: str, work):  # type: ignore[no-untyped-def]
    ls = LabelStudio(url, token)
    try:
        return await work(ls)
    finally:
        await ls.close()


@app.command("init")
def init(
    project: str = typer.Option(..., help="the labelmesh project"),
    url: str = typer.Option("http://127.0.0.1:8080", "--url", help="Label Studio's address"),
    title: str = typer.Option("", help="the Label Studio project's title (default: the labelmesh project)"),
    config: Path = CONFIG, ls_token: str = LS_TOKEN,
    gateway: str = typer.Option("127.0.0.1:50051", "--gateway", envvar="LABELMESH_GATEWAY"),
    admin_token: str = typer.Option(..., "--token", envvar="LABELMESH_ADMIN_TOKEN"),
    ca_cert: Path = typer.Option(None, "--ca-cert", exists=True, dir_okay=False),
) -> None:
    """Create a Label Studio project with the labelmesh project's labels, and write the config file."""
    from labelmesh.admin_cli import call  # noqa: PLC0415 - admin_cli registers this module
    from schemas.rpc import gateway_pb2 as pb  # noqa: PLC0415

    detail = call(gateway, admin_token, ca_cert, lambda a: a.projects.GetProject(
        pb.GetProjectRequest(project=project), metadata=a.metadata))
    created = _run(lambda: _with_ls(url, ls_token, lambda ls: ls.create_project(
        title or project, mapping.label_config(list(detail.labels)),
        f"labelmesh project {project}: tasks come from `labelmesh label-studio sync`")))
    BridgeConfig(project=project, label_studio_url=url, ls_project_id=created["id"], gateway=gateway,
                 ca_cert=str(ca_cert) if ca_cert else None).save(config)
    typer.echo(f"Label Studio project {created['id']} for {project}; config in {config}")


@app.command("map-user")
def map_user(
    email: str = typer.Option(..., help="the Label Studio user's email"),
    annotator: str = typer.Option(..., help="the labelmesh annotator they label as"),
    annotator_token: str = typer.Option(..., "--annotator-token", envvar="LABELMESH_ANNOTATOR_TOKEN",
                                        help="that annotator's labelmesh token (LABELMESH_ANNOTATOR_TOKEN)"),
    config: Path = CONFIG, ls_token: str = LS_TOKEN,
) -> None:
    """Let a Label Studio user label as a labelmesh annotator (their labels are submitted with its token)."""
    bridge = BridgeConfig.load(config)
    users = _run(lambda: _with_ls(bridge.label_studio_url, ls_token, lambda ls: ls.users()))
    found = next((u for u in users if u.get("email", "").lower() == email.lower()), None)
    if found is None:
        typer.echo(f"error: no Label Studio user {email!r} (known: {', '.join(u['email'] for u in users)})", err=True)
        raise typer.Exit(2)
    bridge.users = [u for u in bridge.users if u.email.lower() != email.lower() and u.annotator != annotator]
    bridge.users.append(MappedUser(email=email, ls_user_id=found["id"], annotator=annotator, token=annotator_token))
    bridge.save(config)
    typer.echo(f"{email} (Label Studio user {found['id']}) labels as {annotator}")


@app.command("backend")
def backend(
    config: Path = CONFIG,
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(9090, help="port to listen on"),
) -> None:
    """Serve the ML backend (/health, /setup, /predict, /webhook). Needs LABEL_STUDIO_TOKEN to read annotations back."""
    from labelmesh.label_studio.backend import create_app  # noqa: PLC0415

    if not os.environ.get("LABEL_STUDIO_TOKEN"):
        typer.echo("error: set LABEL_STUDIO_TOKEN (a Label Studio personal access token)", err=True)
        raise typer.Exit(2)
    uvicorn.run(create_app(BridgeConfig.load(config)), host=host, port=port, log_level="info")


@app.command("connect")
def connect(
    backend_url: str = typer.Option("http://127.0.0.1:9090", "--backend-url", help="where the backend listens"),
    config: Path = CONFIG, ls_token: str = LS_TOKEN,
) -> None:
    """Connect the running backend to the Label Studio project (Label Studio adds its /webhook itself)."""
    bridge = BridgeConfig.load(config)
    made = _run(lambda: _with_ls(bridge.label_studio_url, ls_token,
                                 lambda ls: ls.connect_backend(bridge.ls_project_id, backend_url)))
    typer.echo(f"ML backend {made['id']} connected to Label Studio project {bridge.ls_project_id}: {made.get('state')}")


@app.command("sync")
def sync_command(
    per_annotator: int = typer.Option(20, min=1, max=1000, help="tasks to lease for each mapped annotator"),
    follow: bool = typer.Option(False, "--follow", help="keep syncing until interrupted"),
    interval: float = typer.Option(5.0, min=0.5, help="seconds between syncs with --follow"),
    config: Path = CONFIG, ls_token: str = LS_TOKEN,
) -> None:
    """Submit Label Studio's new annotations to labelmesh, then lease what labelmesh routes to each mapped annotator
    and create those tasks (with pre-labels) in Label Studio. Safe to re-run: nothing is submitted twice."""
    from labelmesh.label_studio.sync import sync  # noqa: PLC0415

    bridge = BridgeConfig.load(config)
    if not bridge.users:
        typer.echo("error: no mapped users (labelmesh label-studio map-user)", err=True)
        raise typer.Exit(2)
    async def rounds(ls: LabelStudio) -> None:
        while True:
            report = await sync(bridge, ls, per_annotator)
            if report.annotations:
                typer.echo("annotations from Label Studio: "
                           + ", ".join(f"{n} {status}" for status, n in sorted(report.annotations.items())))
            for refusal in report.refusals:
                typer.echo(f"  refused {refusal}")
            if report.expired:
                typer.echo(f"deleted {report.expired} Label Studio tasks whose lease expired unanswered")
            typer.echo(f"created {report.total} Label Studio tasks: "
                       + ", ".join(f"{a} {n}" for a, n in report.created.items()))
            if not follow:
                return
            await asyncio.sleep(interval)

    try:
        _run(lambda: _with_ls(bridge.label_studio_url, ls_token, rounds))
    except KeyboardInterrupt:
        pass
