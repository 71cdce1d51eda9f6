"""`labelmesh lineage ...` and `labelmesh export ...`: questions and snapshots answered from the trainer's database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from services.trainer.exports import ExportFormat

lineage_app = typer.Typer(help="Which labels trained which model, and which models used a label.",
                          no_args_is_help=True)
console = Console()
T = TypeVar("T")


def _with_db(query: Callable[[Any], Awaitable[T]]) -> T:
    """Run one query against the trainer's database named by the usual LABELMESH_* settings."""
    from pymongo import AsyncMongoClient

    from services.trainer.settings import TrainerSettings

    settings = TrainerSettings()

    async def go() -> T:
        client: AsyncMongoClient = AsyncMongoClient(settings.mongo_uri, tz_aware=True,
                                                    serverSelectionTimeoutMS=10_000, appname="labelmesh-cli")
        try:
            return await query(client[settings.database_name("trainer")])
        finally:
            await client.close()

    return asyncio.run(go())


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


@lineage_app.command("model")
def lineage_model(
    project: str,
    version: int,
    members: bool = typer.Option(False, "--members", help="list every label version, not only the summary"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Which label versions and guideline versions trained model VERSION of PROJECT."""
    from services.trainer.queries import LineageError, model_lineage

    try:
        lineage = _with_db(lambda db: model_lineage(db, project, version))
    except LineageError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        doc = asdict(lineage)
        doc["guideline_versions"] = {str(k): v for k, v in lineage.guideline_versions.items()}
        doc["provenance"] = {str(k): v for k, v in lineage.provenance.items()}
        if not members:
            doc["members"] = [f"{m.item_id}@{m.version}" for m in lineage.members]
        typer.echo(json.dumps(doc, indent=2, default=str))
        return
    console.print(f"[bold]{project} model v{lineage.model_version}[/bold] "
                  f"({'promoted' if lineage.promoted else 'not promoted'}: {lineage.reason})")
    console.print(f"training set {lineage.training_set_version}: {len(lineage.members)} label versions"
                  + (f", [red]{len(lineage.missing)} missing from label_versions[/red]" if lineage.missing else ""))
    console.print("guideline versions: " + ", ".join(f"v{k}: {v}" for k, v in lineage.guideline_versions.items()))
    console.print("provenance: " + ", ".join(f"{k}: {v}" for k, v in lineage.provenance.items()))
    top = list(lineage.label_distribution.items())[:10]
    console.print("labels (top 10): " + ", ".join(f"{k}: {v}" for k, v in top))
    if members:
        table = Table("item", "label version", "label", "guideline", "provenance")
        for m in lineage.members:
            table.add_row(m.item_id, str(m.version), m.label, str(m.guideline_version), str(m.provenance))
        console.print(table)


@lineage_app.command("label")
def lineage_label(
    project: str,
    item: str,
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Every version of ITEM's final label and the models trained on each (e.g. before it was corrected)."""
    from services.trainer.queries import LineageError, label_lineage

    try:
        usages = _with_db(lambda db: label_lineage(db, project, item))
    except LineageError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps([asdict(u) for u in usages], indent=2, default=str))
        return
    table = Table("version", "label", "guideline", "provenance", "status", "trained models", "promoted")
    for u in usages:
        status = "current" if u.current else f"corrected in v{u.superseded_by}"
        table.add_row(str(u.label.version), u.label.label, str(u.label.guideline_version), str(u.label.provenance),
                      status, ", ".join(f"v{m}" for m in u.models) or "-",
                      ", ".join(f"v{m}" for m in u.promoted_models) or "-")
    console.print(f"[bold]{project} / {item}[/bold]")
    console.print(table)


def export(
    project: str = typer.Option(..., "--project", help="the project to export"),
    out: Path = typer.Option(..., "--out", help="directory; the snapshot goes into <out>/<project>-<version>/"),
    formats: list[ExportFormat] = typer.Option([ExportFormat.JSONL], "--format",
                                               help="jsonl, parquet or label-studio (repeat for several)"),
) -> None:
    """Snapshot PROJECT's final labels (with the champion's predictions) and a manifest of hashes and counts."""
    from services.trainer.exporter import export_project
    from services.trainer.queries import LineageError

    try:
        directory, manifest = _with_db(lambda db: export_project(db, project, out, formats))
    except LineageError as exc:
        raise _fail(str(exc)) from None
    console.print(f"snapshot {manifest['snapshot_version'][:12]} of {project}: {manifest['counts']['rows']} rows, "
                  f"champion {manifest['champion']['model_version'] if manifest['champion'] else 'none'}")
    for f in manifest["files"]:
        console.print(f"  {directory / f['name']}  {f['bytes']:,} bytes  sha256 {f['sha256'][:12]}")
    typer.echo(str(directory))
