"""The `labelmesh` command: run a service, create topics, bootstrap a model, run the demo."""

from __future__ import annotations

import asyncio
import importlib
from enum import StrEnum
from pathlib import Path

import typer

from labelmesh.admin_cli import register as register_admin
from labelmesh.annotate import annotate
from labelmesh.runtime.logs import configure_logging
from services.trainer.cli import export, lineage_app

app = typer.Typer(help="labelmesh: an AI-assisted data-labelling pipeline", no_args_is_help=True)


class ServiceName(StrEnum):
    prelabeler = "prelabeler"
    router = "router"
    qc = "qc"
    trainer = "trainer"
    gateway = "gateway"


@app.command()
def run(service: ServiceName) -> None:
    """Run one service as its own process until SIGTERM."""
    module = importlib.import_module(f"services.{service.value}.app")
    runtime = module.create_app()
    configure_logging(service.value, runtime.settings.log_level)
    asyncio.run(runtime.serve())


@app.command()
def topics() -> None:
    """Create every labelmesh topic that does not exist yet."""
    from labelmesh.infra import main

    raise typer.Exit(main(["topics"]))


@app.command()
def bootstrap(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV (text, label|category) or JSON lines"),
    project: str = typer.Option(..., help="the project, already configured with its label set"),
    gateway: str = typer.Option("127.0.0.1:50051", help="the gateway's gRPC address"),
    token: str = typer.Option(..., envvar="LABELMESH_ADMIN_TOKEN", help="an admin token"),
    limit: int | None = typer.Option(None, help="use only the first N rows"),
    wait: bool = typer.Option(True, help="wait until the trainer publishes the model"),
    timeout: float = typer.Option(600.0, help="seconds to wait for the model"),
) -> None:
    """Train a project's first model from a small labelled file: ingested as trusted labels, trained by the trainer."""
    from datetime import UTC, datetime

    from labelmesh.bootstrap import BadRow, ingest_trusted, read_rows, wait_for_model
    from labelmesh.client import GatewayClient
    from labelmesh.runtime.settings import CommonSettings

    try:
        rows = read_rows(file, limit)
    except BadRow as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc

    async def go() -> None:
        client = GatewayClient(gateway, token)
        started = datetime.now(UTC)
        try:
            accepted = await ingest_trusted(client, project, rows)
        finally:
            await client.close()
        typer.echo(f"ingested {accepted} of {len(rows)} trusted rows into {project}")
        if wait:
            model = await wait_for_model(CommonSettings(), project, after=started, timeout_s=timeout)
            metrics = model.get("heldout_metrics", {})
            typer.echo(f"model v{model['model_version']} trained on {model['training_set_size']} labels "
                       f"(held-out accuracy {metrics.get('heldout_accuracy', float('nan')):.3f})")

    asyncio.run(go())


@app.command()
def demo(
    items: int = typer.Option(1000, help="BANKING77 items pushed through the pipeline after bootstrapping"),
    bootstrap: int = typer.Option(500, help="rows labelled by the 'internal team' to train model v1"),
    encoder: str = typer.Option("minilm", help="minilm (the real encoder) or hashing (fast stub)"),
    seed: int = typer.Option(7),
    timeout: float = typer.Option(3600.0, help="stop waiting for final labels after this many seconds"),
    dataset: Path = typer.Option(None, help="a text-classification set in BANKING77's layout: train.csv and "
                                            "test.csv with text and category columns, and categories.json "
                                            "(default: the packaged BANKING77)"),
) -> None:
    """Start the five services, bootstrap a model, label a dataset sample with simulated annotators, report."""
    from labelmesh.datasets import DatasetError, load
    from labelmesh.demo import run_demo

    if dataset is not None:
        try:
            load("train", dataset), load("test", dataset)  # a bad layout fails here, before any service starts
        except DatasetError as exc:
            raise typer.BadParameter(str(exc), param_hint="--dataset") from exc
    asyncio.run(run_demo(items=items, bootstrap=bootstrap, encoder=encoder, seed=seed, timeout_s=timeout,
                         dataset=dataset))


@app.command("qc-report")
def qc_report(
    project: str = typer.Option(..., help="project id"),
    since: str = typer.Option(None, help="only labels at or after this ISO time (UTC)"),
    until: str = typer.Option(None, help="only labels before this ISO time (UTC)"),
    min_annotators: int = typer.Option(2, help="only items labelled by at least this many annotators"),
    top: int = typer.Option(10, help="how many disputed items to list"),
    session: str = typer.Option(None, help="only the labels of this calibration session (CreateCalibrationSession)"),
) -> None:
    """Calibration-session report from qc's labels: per-item disagreement, pairwise kappa, most disputed items."""
    from labelmesh.qc_report import main

    raise typer.Exit(main(project, since=since, until=until, min_annotators=min_annotators, top=top, session=session))


@app.command()
def events(
    topic: list[str] = typer.Argument(None, help="topics to read (item.ingested, ..., deadletter) or 'all' (default)"),
    project: list[str] = typer.Option([], "--project", "-p", help="only these projects (repeatable)"),
    item: list[str] = typer.Option([], "--item", "-i", help="only these item ids (repeatable)"),
    event_type: list[str] = typer.Option([], "--type", "-t", help="only these event types (repeatable)"),
    since: str = typer.Option(None, help="start at this time (ISO 8601, Unix ms, or an age: 15m, 2h, 7d)"),
    until: str = typer.Option(None, help="only records before this time"),
    offset: int = typer.Option(None, help="start at this offset on every partition"),
    latest: bool = typer.Option(False, help="start at the end (with --follow: only new records)"),
    partition: int = typer.Option(None, help="read only this partition"),
    follow: bool = typer.Option(False, "--follow", "-f", help="keep reading new records until interrupted"),
    limit: int = typer.Option(None, help="stop after this many matching records"),
) -> None:
    """Dump or tail topics as JSON lines (a dead letter shows its decoded original), filtered."""
    from labelmesh.events import run as run_events

    try:
        run_events(topic or [], projects=project, items=item, types=event_type, since=since, until=until,
                   offset=offset, latest=latest, partition=partition, follow=follow, limit=limit)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command()
def replay(
    service: str = typer.Argument(None, help="prelabeler, router, qc or trainer (stopped)"),
    since: str = typer.Option(None, help="replay from this time only, keeping the state (ISO 8601, Unix ms, 2h...)"),
    dead_letters: bool = typer.Option(False, "--dead-letters", help="re-drive dead-lettered events instead"),
    consumer: str = typer.Option(None, help="with --dead-letters: only those this service dead-lettered"),
    topic: str = typer.Option(None, help="with --dead-letters: only those from this topic"),
    dry_run: bool = typer.Option(False, "--dry-run", help="with --dead-letters: list, do not publish"),
    all_letters: bool = typer.Option(False, "--all", help="with --dead-letters: also those already re-driven"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask before dropping the service's state"),
) -> None:
    """Rebuild a stopped service from the topics (drops its state, rewinds its consumer groups), or re-drive dead letters."""
    from labelmesh.replay import ReplayRefused
    from labelmesh.replay import run as run_replay

    if service and not dead_letters and not since and not yes:
        typer.confirm(f"drop every collection of {service}'s database and rebuild it from the topics?", abort=True)
    try:
        raise typer.Exit(run_replay(service, since=since, dead_letters=dead_letters, consumer=consumer, topic=topic,
                                    dry_run=dry_run, all_letters=all_letters))
    except (ReplayRefused, ValueError) as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(1) from exc


# The trainer's read-side commands: lineage questions and export snapshots (services/trainer/cli.py).
app.add_typer(lineage_app, name="lineage")
app.command("snapshot")(export)
# The admins' commands, all over gRPC to the gateway (labelmesh/admin_cli.py); `export` reads the gateway's API.
register_admin(app)
app.command("annotate")(annotate)  # the terminal reference client (labelmesh/annotate.py)


if __name__ == "__main__":
    app()
