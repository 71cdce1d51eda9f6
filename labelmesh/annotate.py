"""`labelmesh annotate`: label in the terminal through the gateway's gRPC API, and the example for tool builders.

The whole protocol in five calls (labelmesh/client.py): LeaseTask for the next task (the same one again while
its lease runs), SubmitLabel with an idempotency key (retrying with the same key stores one label), SkipTask,
FlagItem (with an item id, or without one to flag the guidelines), GetGuidelines. A spans project's task is
shown and edited by labelmesh/annotate_spans.py and submitted as spans.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import typer
from rich.columns import Columns
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from labelmesh.annotate_spans import SPAN_KEYS, EditError, as_proto, edit, entities_of, show_spans
from labelmesh.client import GatewayClient
from schemas.rpc import gateway_pb2 as pb

KEYS = "type a label (number or name) · s skip · f flag · g guidelines · q quit"

Ask = Callable[[str], Awaitable[str]]


def choice(answer: str, labels: list[str]) -> str | None:
    """The label an answer names: its number in the list (from 1) or the label itself, in any case."""
    answer = answer.strip()
    if answer.isdigit() and 1 <= int(answer) <= len(labels):
        return labels[int(answer) - 1]
    return {label.lower(): label for label in labels}.get(answer.lower())


def show(console: Console, task: pb.Task) -> None:
    """The task as a person sees it; its text and labels are data, never rich markup."""
    title = f"{task.item_id} · " + (f"session {task.session_id}" if task.session_id else task.tier)
    console.print(Panel(Text(task.text), title=escape(title), subtitle=f"guidelines v{task.guideline_version}"))
    if task.prelabel:
        guesses = ", ".join(f"{p.label} ({p.probability:.0%})" for p in task.prelabel[:3])
        console.print(f"Model suggests: [bold]{escape(guesses)}[/]")
    for n in task.neighbours:  # experts only: similar labelled items
        console.print(escape(f"  similar: {n.item_id} is {n.label!r} (similarity {n.similarity:.2f})"))
    for reason in task.reasons:
        console.print(escape(f"  why you: {reason}"))
    console.print(Columns([f"[cyan]{i}[/] {escape(label)}" for i, label in enumerate(task.labels, 1)],
                          padding=(0, 3)))


async def label_tasks(client: GatewayClient, project: str, console: Console, ask: Ask) -> dict[str, int]:
    """Lease, show and answer tasks until the queue is empty or the person quits; counts what was done."""
    done = {"labelled": 0, "skipped": 0, "flagged": 0}
    while (task := await client.lease(project)) is not None:
        spans = task.task_type == "spans"
        entities = entities_of(task)
        show_spans(console, task, entities) if spans else show(console, task)
        key = uuid.uuid4().hex  # one key per task: a retried submission is stored once
        started = time.monotonic()
        while True:
            answer = (await ask(SPAN_KEYS if spans else KEYS)).strip()
            try:
                if answer == "q":
                    console.print("Bye. Your current task stays yours until its lease runs out.")
                    return done
                if answer == "g":
                    guidelines = await client.guidelines(project)
                    console.print(Panel(Markdown(guidelines.text or "(no guidelines yet)"),
                                        title=f"guidelines v{guidelines.version}"))
                elif answer == "f":
                    comment = (await ask("what is wrong with this item?")).strip()
                    if comment:
                        await client.flag(project, comment, item_id=task.item_id)
                        done["flagged"] += 1
                        console.print("Flagged; thank you.")
                elif answer == "s":
                    await client.skip(task.task_id, reason="skipped in labelmesh annotate")
                    done["skipped"] += 1
                    break
                elif spans and answer in ("", "a"):
                    spent = int((time.monotonic() - started) * 1000)
                    await client.submit(task.task_id, "", key, time_spent_ms=spent, spans=as_proto(entities))
                    done["labelled"] += 1
                    console.print(f"[green]Saved {len(entities)} entities.[/]")
                    break
                elif spans:
                    try:
                        entities = edit(entities, answer, task.text, list(task.labels))
                    except EditError as exc:
                        console.print(f"[red]{escape(str(exc))}[/]")
                    show_spans(console, task, entities)
                elif (label := choice(answer, list(task.labels))) is not None:
                    spent = int((time.monotonic() - started) * 1000)
                    await client.submit(task.task_id, label, key, time_spent_ms=spent)
                    done["labelled"] += 1
                    console.print(f"[green]Saved {label!r}.[/]")
                    break
                else:
                    console.print(f"[red]{escape(repr(answer))} is not one of the labels.[/]")
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
                    raise
                console.print(f"[red]{escape(exc.details() or '')}[/] Moving on.")  # e.g. the lease ran out
                break
    console.print("No task is waiting for you in this project.")
    return done


def annotate(
    project: str = typer.Option(..., help="the project to label"),
    gateway: str = typer.Option("127.0.0.1:50051", envvar="LABELMESH_GATEWAY", help="the gateway's gRPC address"),
    token: str = typer.Option(..., envvar="LABELMESH_TOKEN", help="your annotator token"),
    ca_cert: Path = typer.Option(None, exists=True, dir_okay=False, help="CA certificate for a gateway with TLS"),
) -> None:
    """Label tasks in the terminal: the task's text, the model's suggestion and the labels; type your answer."""
    console = Console(highlight=False)

    async def ask(prompt: str) -> str:
        try:
            return await asyncio.to_thread(console.input, f"[dim]{prompt}[/] > ")
        except EOFError:
            return "q"

    async def run() -> dict[str, int]:
        channel = None
        if ca_cert:
            channel = grpc.aio.secure_channel(gateway, grpc.ssl_channel_credentials(ca_cert.read_bytes()))
        client = GatewayClient(gateway, token, channel)
        try:
            return await label_tasks(client, project, console, ask)
        finally:
            await client.close()

    try:
        done = asyncio.run(run())
    except grpc.aio.AioRpcError as exc:
        console.print(f"[red]{exc.code().name}: {escape(exc.details() or '')}[/]")
        raise typer.Exit(1) from exc
    console.print(", ".join(f"{n} {what}" for what, n in done.items()))
