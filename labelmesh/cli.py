"""The `labelmesh` command: run a service, create topics, bootstrap a model, run the demo."""

from __future__ import annotations

import asyncio
import importlib
from enum import StrEnum

import typer

from labelmesh.runtime.logs import configure_logging

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
def demo(
    items: int = typer.Option(1500, help="BANKING77 items pushed through the pipeline after bootstrapping"),
    bootstrap: int = typer.Option(500, help="rows labelled by the 'internal team' to train model v1"),
    encoder: str = typer.Option("minilm", help="minilm (the real encoder) or hashing (fast stub)"),
    seed: int = typer.Option(7),
) -> None:
    """Start the five services, bootstrap a model, label a BANKING77 sample with simulated annotators, report."""
    from labelmesh.demo import run_demo

    asyncio.run(run_demo(items=items, bootstrap=bootstrap, encoder=encoder, seed=seed))


@app.command("qc-report")
def qc_report(
    project: str = typer.Option(..., help="project id"),
    since: str = typer.Option(None, help="only labels at or after this ISO time (UTC)"),
    until: str = typer.Option(None, help="only labels before this ISO time (UTC)"),
    min_annotators: int = typer.Option(2, help="only items labelled by at least this many annotators"),
    top: int = typer.Option(10, help="how many disputed items to list"),
) -> None:
    """Calibration-session report from qc's labels: per-item disagreement, pairwise kappa, most disputed items."""
    from labelmesh.qc_report import main

    raise typer.Exit(main(project, since=since, until=until, min_annotators=min_annotators, top=top))


if __name__ == "__main__":
    app()
