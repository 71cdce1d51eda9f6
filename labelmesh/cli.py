"""The `labelmesh` command: run a service, create topics, bootstrap a model, run the demo."""

from __future__ import annotations

import asyncio
import importlib
from enum import StrEnum
from pathlib import Path

import typer

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
    items: int = typer.Option(1500, help="BANKING77 items pushed through the pipeline after bootstrapping"),
    bootstrap: int = typer.Option(500, help="rows labelled by the 'internal team' to train model v1"),
    encoder: str = typer.Option("minilm", help="minilm (the real encoder) or hashing (fast stub)"),
    seed: int = typer.Option(7),
) -> None:
    """Start the five services, bootstrap a model, label a BANKING77 sample with simulated annotators, report."""
    from labelmesh.demo import run_demo

    asyncio.run(run_demo(items=items, bootstrap=bootstrap, encoder=encoder, seed=seed))


# The trainer's read-side commands: lineage questions and export snapshots (services/trainer/cli.py).
app.add_typer(lineage_app, name="lineage")
app.command("export")(export)


if __name__ == "__main__":
    app()
