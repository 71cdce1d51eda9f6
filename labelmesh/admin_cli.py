"""The admins' commands (project, annotator, ingest, status, export, guidelines, calibrate): gRPC to the gateway only."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import grpc
import typer
from grpc_status import rpc_status
from google.rpc import error_details_pb2
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from labelmesh.client import GatewayClient
from labelmesh.export_formats import write_export
from labelmesh.ingest_file import BadFile, Columns, Row, Validated
from schemas.keys import ALL_PROJECTS
from schemas.spans import SPANS_LABEL
from schemas.rpc import gateway_pb2 as pb
from schemas.rpc import gateway_pb2_grpc as pb_grpc

T = TypeVar("T")
console = Console()
project_app = typer.Typer(help="Create, list and show projects.", no_args_is_help=True)
annotator_app = typer.Typer(help="Add, list, revoke annotators and rotate their tokens.", no_args_is_help=True)
guidelines_app = typer.Typer(help="Publish a project's guidelines.", no_args_is_help=True)
INGEST_BATCH = 500

GATEWAY = typer.Option("127.0.0.1:50051", "--gateway", envvar="LABELMESH_GATEWAY", help="the gateway's gRPC address")
TOKEN = typer.Option(..., "--token", envvar="LABELMESH_ADMIN_TOKEN", help="an admin token (LABELMESH_ADMIN_TOKEN)")
CA_CERT = typer.Option(None, "--ca-cert", exists=True, dir_okay=False, help="CA certificate for a gateway with TLS")


class Admin(GatewayClient):
    """The gateway client with the read side's stub."""

    def __init__(self, gateway: str, token: str, ca_cert: Path | None) -> None:
        channel = (grpc.aio.secure_channel(gateway, grpc.ssl_channel_credentials(ca_cert.read_bytes())) if ca_cert
                   else grpc.aio.insecure_channel(gateway))
        super().__init__(gateway, token, channel)
        self.projects = pb_grpc.ProjectServiceStub(self.channel)


def explain(exc: grpc.aio.AioRpcError) -> str:
    """The status code and message, plus each field violation the gateway attached."""
    lines = [f"{exc.code().name}: {exc.details()}"]
    status = rpc_status.from_call(exc)
    for detail in status.details if status else ():
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            lines += [f"  {v.field}: {v.description}" for v in bad.field_violations]
    return "\n".join(lines)


async def _with_admin(gateway: str, token: str, ca_cert: Path | None, work: Callable[[Admin], Awaitable[T]]) -> T:
    admin = Admin(gateway, token, ca_cert)
    try:
        return await work(admin)
    finally:
        await admin.close()


def call(gateway: str, token: str, ca_cert: Path | None, work: Callable[[Admin], Awaitable[T]]) -> T:
    """Run one command's calls on a fresh channel; a gRPC error becomes a message and exit code 1."""
    try:
        return asyncio.run(_with_admin(gateway, token, ca_cert, work))
    except grpc.aio.AioRpcError as exc:
        console.print(f"[red]error[/red] {explain(exc)}", highlight=False)
        raise typer.Exit(1) from exc


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"{what} {path}: {exc}") from exc


def read_labels(path: Path) -> list[str]:
    """One label per line (blank lines and # comments ignored)."""
    labels = [line.strip() for line in _read_text(path, "labels file").splitlines()]
    labels = [label for label in labels if label and not label.startswith("#")]
    if not labels:
        raise typer.BadParameter(f"labels file {path} has no labels (one per line)")
    return labels


@project_app.command("create")
def project_create(
    name: str,
    labels: Path = typer.Option(..., exists=True, dir_okay=False, help="the label set, one per line"),
    guidelines: Path = typer.Option(..., exists=True, dir_okay=False, help="the guidelines (Markdown)"),
    multi_annotators: int = typer.Option(0, help="annotators per contested item (0: the gateway's default)"),
    task: str = typer.Option("classification", help="classification, or spans (the labels are entity types)"),
    gateway: str = GATEWAY, token: str = TOKEN, ca_cert: Path = CA_CERT,
) -> None:
    """Create a project (or update its labels and guidelines: a new guideline version)."""
    label_list, text = read_labels(labels), _read_text(guidelines, "guidelines")
    project = call(gateway, token, ca_cert, lambda a: a.configure_project(
        name, label_list, text, multi_annotators=multi_annotators, task_type=task))
    console.print(f"project {project.project}: {len(project.labels)} labels, guidelines v{project.guideline_version}"
                  + (f", {project.task_type} task" if project.task_type == "spans" else ""))


@project_app.command("list")
def project_list(gateway: str = GATEWAY, token: str = TOKEN, ca_cert: Path = CA_CERT) -> None:
    """Every project."""
    async def every(admin: Admin) -> list[pb.ProjectDetail]:
        found, page = [], ""
        while True:
            response = await admin.projects.ListProjects(pb.ListProjectsRequest(page_token=page), metadata=admin.metadata)
            found += response.projects
            if not (page := response.next_page_token):
                return found

    table = Table("project", "labels", "guidelines")
    for p in call(gateway, token, ca_cert, every):
        table.add_row(p.project, str(len(p.labels)), f"v{p.guideline_version}")
    console.print(table)


@project_app.command("show")
def project_show(name: str, gateway: str = GATEWAY, token: str = TOKEN, ca_cert: Path = CA_CERT) -> None:
    """A project's labels, guideline version and settings."""
    p = call(gateway, token, ca_cert, lambda a: a.projects.GetProject(pb.GetProjectRequest(project=name),
                                                                       metadata=a.metadata))
    console.print(f"project {p.project}\nguidelines v{p.guideline_version}\nannotators per contested item "
                  f"{p.multi_annotators}\ntarget auto-label error {p.target_auto_error}\nlabels: {', '.join(p.labels)}",
                  highlight=False)


@annotator_app.command("add")
def annotator_add(
    annotator_id: str, role: str = typer.Option("annotator", help="annotator, expert or admin"),
    project: list[str] = typer.Option([], "--project", "-p",
                                      help="a project they work in (repeat for several); needed but for admins"),
    all_projects: bool = typer.Option(False, "--all-projects", help="a member of every project"),
    expires_in_days: float = typer.Option(0.0, "--expires-in-days", min=0.0,
                                          help="the token stops working after this many days (0: never)"),
    gateway: str = GATEWAY, token: str = TOKEN, ca_cert: Path = CA_CERT,
) -> None:
    """Add an annotator (or re-issue their token) and print the token (shown once; the gateway keeps its hash)."""
    projects = [ALL_PROJECTS] if all_projects else project
    expires_ms = int((time.time() + expires_in_days * 86_400) * 1000) if expires_in_days else 0
    secret = call(gateway, token, ca_cert, lambda a: a.create_annotator(annotator_id, role, projects, expires_ms))
    typer.echo(secret)


@annotator_app.command("list")
def annotator_list(gateway: str = GATEWAY, token: str = TOKEN, ca_cert: Path = CA_CERT) -> None:
    """Every annotator with role and state."""
    async def every(admin: Admin) -> list[pb.AnnotatorInfo]:
        found, page = [], ""
        while True:
            response = await admin.projects.ListAnnotators(pb.ListAnnotatorsRequest(page_token=page),
                                                           metadata=admin.metadata)
            found += response.annotators
            if not (page := response.next_page_token):
                return found

    table = Table("annotator", "role", "state", "token expires (UTC)")
    for a in call(gateway, token, ca_cert, every):
        expires = (datetime.fromtimestamp(a.expires_unix_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
                   if a.expires_unix_ms else "never")
        table.add_row(a.annotator_id, a.role, "revoked" if a.revoked else "suspended" if a.suspended else "active",
                      expires)
    console.print(table)


@annotator_app.command("revoke")
def annotator_revoke(annotator_id: str, gateway: str = GATEWAY, token: str = TOKEN, ca_cert: Path = CA_CERT) -> None:
    """Revoke an annotator's token at once."""
    call(gateway, token, ca_cert, lambda a: a.projects.RevokeAnnotator(
        pb.RevokeAnnotatorRequest(annotator_id=annotator_id), metadata=a.metadata))
    console.print(f"revoked {annotator_id}")


@annotator_app.command("rotate")
def annotator_rotate(annotator_id: str, gateway: str = GATEWAY, token: str = TOKEN, ca_cert: Path = CA_CERT) -> None:
    """Give an annotator a new token (printed once); the old one stops working."""
    creds = call(gateway, token, ca_cert, lambda a: a.projects.RotateAnnotatorToken(
        pb.RevokeAnnotatorRequest(annotator_id=annotator_id), metadata=a.metadata))
    typer.echo(creds.token)


def ingest(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV, JSONL or Parquet"),
    project: str = typer.Option(..., help="the project"),
    text_column: str = typer.Option("text", help="the column holding the text"),
    id_column: str = typer.Option(None, help="the column holding item ids (default: a hash of the text)"),
    golden_column: str = typer.Option(None, help="a column of known answers; rows with one become golden items"),
    source: str = typer.Option("cli", help="recorded as each item's source"),
    gateway: str = GATEWAY, token: str = TOKEN, ca_cert: Path = CA_CERT,
) -> None:
    """Check the whole file first (nothing is sent if any row is bad), then send it in batches; safe to re-run.

    A batch the gateway refuses all the same (its own bounds, an id it holds with another text) stops the ingest
    with a report of the rows that went in before it; a re-run sends them again as no-ops."""
    detail = call(gateway, token, ca_cert, lambda a: a.projects.GetProject(pb.GetProjectRequest(project=project),
                                                                            metadata=a.metadata))
    try:
        checked = Validated(file, Columns(text_column, id_column, golden_column), list(detail.labels))
        checked.raise_for_errors()
    except BadFile as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    report = checked.report
    sent = Sent()

    async def send(admin: Admin) -> None:
        with Progress(TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=False) as bar:
            task = bar.add_task("ingest", total=report.items)
            batch: list[Row] = []
            for row in checked.items():
                batch.append(row)
                if len(batch) == INGEST_BATCH:
                    await sent.batch(admin, project, source, file.name, batch)
                    bar.advance(task, len(batch))
                    batch = []
            if batch:
                await sent.batch(admin, project, source, file.name, batch)
                bar.advance(task, len(batch))

    try:
        asyncio.run(_with_admin(gateway, token, ca_cert, send))
    except grpc.aio.AioRpcError as exc:
        typer.echo(f"error: {sent.refusal(exc)}", err=True)
        raise typer.Exit(1) from exc
    finally:
        checked.close()
    repeats = report.rows - report.items
    console.print(f"ingested {sent.accepted} items into {project} ({report.golden} golden"
                  + (f", {repeats} repeated rows sent once" if repeats else "") + ")", highlight=False)


class Sent:
    """What an ingest has sent so far, so a refusal part-way can say exactly what went in."""

    def __init__(self) -> None:
        self.accepted = 0  # items the gateway accepted (a re-sent item counts: it is in)
        self.last_row = 0  # the file's last row in an accepted batch
        self.pending: list[Row] = []

    async def batch(self, admin: Admin, project: str, source: str, dataset: str, rows: list[Row]) -> None:
        self.pending = rows
        answer = await admin.ingest_items([
            pb.IngestItem(project=project, item_id=r.item_id, text=r.text, source=source, dataset=dataset,
                          golden_label=r.golden or "", metadata=r.metadata) for r in rows])
        self.accepted += answer.accepted
        self.last_row, self.pending = rows[-1].number, []

    def refusal(self, exc: grpc.aio.AioRpcError) -> str:
        """The gateway's refusal, the rows it names, and what went in before it."""
        rows = self.pending
        words = set(re.findall(r"[^\s,;:'\"()]+", exc.details() or ""))  # the item ids the refusal names
        named = [r.number for r in rows if r.item_id in words][:20]
        where = f"rows {rows[0].number}..{rows[-1].number}" if rows else "the first batch"
        lines = [f"the gateway refused the batch of {where}"
                 + (f" (row {', '.join(map(str, named))})" if named else "") + f": {explain(exc)}"]
        if self.last_row:
            lines.append(f"went in before it: rows 1..{self.last_row} ({self.accepted} items); nothing after row "
                         f"{self.last_row}. Fix the file and run ingest again: the rows already in are sent again "
                         "and change nothing.")
        else:
            lines.append("nothing was ingested.")
        return "\n".join(lines)


def stats_table(s: pb.ProjectStats, cost_per_label: float, now_ms: int) -> Table:
    table = Table("", "", title=f"project {s.project}", show_header=False)
    table.add_row("ingested", f"{s.ingested} ({s.golden_items} golden)")
    table.add_row("routed", ", ".join(f"{tier} {n}" for tier, n in sorted(s.routed.items())) or "-")
    routed = sum(s.routed.values())
    table.add_row("pre-labelled", f"{s.prelabelled}" + (f" ({routed - s.prelabelled} routed with no model yet)"
                                                        if routed > s.prelabelled else ""))
    table.add_row("waiting for people", str(s.open_items))
    by_provenance = ", ".join(f"{k} {n}" for k, n in sorted(s.final_by_provenance.items()))
    table.add_row("final", f"{s.final} ({by_provenance})" if by_provenance else str(s.final))
    table.add_row("human labels spent", str(s.human_labels))
    table.add_row("cost", f"{s.human_labels * cost_per_label:.2f} (at {cost_per_label} per label)")
    table.add_row("golden accuracy", f"{s.golden_correct / s.golden_answered:.1%} of {s.golden_answered}"
                  if s.golden_answered else "-")
    table.add_row("unanimous multi-labelled items", f"{s.unanimous / s.multi_labelled:.1%} of {s.multi_labelled}"
                  if s.multi_labelled else "-")
    remaining = s.ingested - s.final
    span = (s.last_final_unix_ms - s.first_final_unix_ms) / 1000
    if remaining <= 0 and s.ingested:
        eta = "done"
    elif s.final > 1 and span > 0:
        eta = f"~{remaining / (s.final / span):.0f} s at {s.final / span:.2f} final/s"
    else:
        eta = "-"
    table.add_row("ETA", eta)
    return table


def status(
    project: str = typer.Option(..., help="the project"),
    watch: bool = typer.Option(False, "--watch", help="refresh until interrupted"),
    until_done: bool = typer.Option(False, "--until-done", help="with --watch: stop when every item is final"),
    interval: float = typer.Option(2.0, help="seconds between refreshes with --watch"),
    cost_per_label: float = typer.Option(0.10, help="what one human label costs, for the cost line"),
    gateway: str = GATEWAY, token: str = TOKEN, ca_cert: Path = CA_CERT,
) -> None:
    """A project's progress from the gateway: ingested, routed per tier, waiting, final, labels spent, quality, ETA."""
    async def one(admin: Admin) -> pb.ProjectStats:
        return await admin.projects.GetProjectStats(pb.GetProjectRequest(project=project), metadata=admin.metadata)

    if not watch:
        console.print(stats_table(call(gateway, token, ca_cert, one), cost_per_label, int(time.time() * 1000)))
        return

    async def loop(admin: Admin) -> None:
        with Live(console=console, auto_refresh=False) as live:
            while True:
                stats = await one(admin)
                live.update(stats_table(stats, cost_per_label, int(time.time() * 1000)), refresh=True)
                if until_done and stats.ingested and stats.final >= stats.ingested:
                    return
                await asyncio.sleep(interval)

    try:
        call(gateway, token, ca_cert, loop)
    except KeyboardInterrupt:
        pass


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    parquet = "parquet"
    hf = "hf"
    label_studio = "label-studio"
    conll = "conll"


async def final_labels(admin: Admin, project: str, retries: int = 5,
                       pause: Callable[[float], Awaitable[None]] = asyncio.sleep) -> AsyncIterator[pb.FinalLabel]:
    """Every final label, resuming from the last cursor when the stream breaks (UNAVAILABLE)."""
    cursor, failures = "", 0
    while True:
        try:
            async for row in admin.projects.ExportFinalLabels(
                    pb.ExportFinalLabelsRequest(project=project, cursor=cursor), metadata=admin.metadata):
                cursor, failures = row.cursor, 0
                yield row
            return
        except grpc.aio.AioRpcError as exc:
            failures += 1
            if exc.code() != grpc.StatusCode.UNAVAILABLE or failures > retries:
                raise
            await pause(min(2 ** failures, 30))


def export(
    project: str = typer.Option(..., help="the project"),
    format: ExportFormat = typer.Option(ExportFormat.jsonl, "--format",
                                        help="jsonl, parquet, hf, label-studio or (spans projects) conll"),
    out: Path = typer.Option(..., help="the file to write (a directory for hf)"),
    gateway: str = GATEWAY, token: str = TOKEN, ca_cert: Path = CA_CERT,
) -> None:
    """Export final labels from the gateway (ExportFinalLabels): per-annotator labels, confidence, provenance,
    model version and the ingested metadata with every row."""
    async def go(admin: Admin) -> int:
        detail = await admin.projects.GetProject(pb.GetProjectRequest(project=project), metadata=admin.metadata)
        rows: list[dict[str, Any]] = []
        async for row in final_labels(admin, project):
            rows.append(export_row(row))
        write_export(format.value, rows, list(detail.labels), out)
        return len(rows)

    n = call(gateway, token, ca_cert, go)
    console.print(f"exported {n} final labels of {project} to {out} ({format.value})", highlight=False)


def export_row(row: pb.FinalLabel) -> dict[str, Any]:
    """One exported row; a spans project's row has its entities (character offsets into text, and the text they
    cover) instead of a label."""
    if row.label == SPANS_LABEL:
        spans = [{"start": s.start, "end": s.end, "label": s.label, "text": row.text[s.start:s.end]}
                 for s in row.spans]
        return {**{k: v for k, v in _row(row).items() if k != "label"}, "spans": spans}
    return _row(row)


def _row(row: pb.FinalLabel) -> dict[str, Any]:
    return {"item_id": row.item_id, "text": row.text, "label": row.label, "version": row.version,
            "confidence": round(row.confidence, 6), "provenance": row.provenance,
            "model_version": row.model_version or None, "guideline_version": row.guideline_version or None,
            "golden": row.golden,
            "annotator_labels": [{"annotator_id": a.annotator_id, "label": a.label} for a in row.annotator_labels],
            "metadata": dict(sorted(row.metadata.items()))}


@guidelines_app.command("publish")
def guidelines_publish(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="the new guidelines (Markdown)"),
    project: str = typer.Option(..., help="the project"),
    gateway: str = GATEWAY, token: str = TOKEN, ca_cert: Path = CA_CERT,
) -> None:
    """Publish new guideline text as the project's next version (labels and settings kept)."""
    text = _read_text(file, "guidelines")
    g = call(gateway, token, ca_cert, lambda a: a.publish_guidelines(project, text))
    console.print(f"{project}: guidelines v{g.version}")


def calibrate(
    project: str = typer.Option(..., help="the project"),
    n: int = typer.Option(20, help="how many ingested items everyone labels"),
    annotator: list[str] = typer.Option([], "--annotator", help="who labels them (repeatable; default: every active)"),
    session_id: str = typer.Option("", help="a session id of your choosing, so a retry creates nothing twice"),
    gateway: str = GATEWAY, token: str = TOKEN, ca_cert: Path = CA_CERT,
) -> None:
    """Start a calibration session: the same items for every chosen annotator, without the model's suggestion."""
    s = call(gateway, token, ca_cert, lambda a: a.create_calibration_session(
        project, n=n, annotators=annotator, session_id=session_id))
    console.print(f"session {s.session_id}: {len(s.item_ids)} items for {', '.join(s.annotators)}\n"
                  f"report: labelmesh qc-report --project {project} --session {s.session_id}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the admin commands to the `labelmesh` app."""
    app.add_typer(project_app, name="project")
    app.add_typer(annotator_app, name="annotator")
    app.add_typer(guidelines_app, name="guidelines")
    app.command("ingest")(ingest)
    app.command("status")(status)
    app.command("export")(export)
    app.command("calibrate")(calibrate)
    from labelmesh.label_studio.cli import app as label_studio_app  # noqa: PLC0415 - its own command group

    app.add_typer(label_studio_app, name="label-studio")
