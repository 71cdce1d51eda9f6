"""The demo: the whole pipeline on a text-classification set (BANKING77 unless `--dataset DIR`) with a simulated
team, ending in a report of what it cost and achieved."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from labelmesh.bootstrap import ingest_trusted
from labelmesh.client import GatewayClient
from labelmesh.datasets import REPO_ROOT, Row, categories, dataset_name, load
from labelmesh.infra import create_topics
from labelmesh.report import golden_accuracy, write_html
from labelmesh.runtime.settings import CommonSettings
from labelmesh.simulation import SimulatedAnnotator, default_team
from labelmesh.stack import Stack
from schemas.rpc import gateway_pb2 as pb

PROJECT = "banking77"  # the packaged dataset's project; another dataset's is its directory's name
BANKING77_GUIDELINES = "Label the customer's banking intent."
PRICE_LABEL = 0.10
PRICE_EXPERT = 0.50
console = Console()


@dataclass
class EventLog:
    """Everything the demo's topics carried, read back from Kafka as any consumer would."""

    by_topic: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    async def follow(self, bootstrap: str, prefix: str, topics: list[str], stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(*(prefix + t for t in topics), bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="earliest", max_partition_fetch_bytes=16 * 1024 * 1024,
                                    fetch_max_bytes=64 * 1024 * 1024)
        await consumer.start()
        try:
            while not stop.is_set():
                for tp, records in (await consumer.getmany(timeout_ms=300)).items():
                    topic = tp.topic.removeprefix(prefix)
                    self.by_topic[topic].extend(json.loads(r.value) for r in records)
        finally:
            await consumer.stop()


async def _annotate(client: GatewayClient, project: str, sim: SimulatedAnnotator, truth: dict[str, str],
                    stop: asyncio.Event, counts: Counter[str]) -> None:
    """One simulated person working through their queue, as an annotation tool would over gRPC.

    A refused call (a lease that expired, a suspension) is what a real tool sees too: it is counted and
    reported, and the annotator carries on, unless they were suspended.
    """
    while not stop.is_set():
        try:
            task = await client.lease(project)
            if task is None:
                await asyncio.sleep(0.3)
                continue
            label = sim.answer(truth[task.item_id], list(task.labels), [p.label for p in task.prelabel])
            await client.submit(task.task_id, label, key=f"{task.task_id}", time_spent_ms=sim.time_spent_ms())
            counts[sim.role] += 1
        except grpc.aio.AioRpcError as exc:
            counts[f"refused {exc.code().name}"] += 1
            console.print(f"[yellow]{sim.name}: {exc.code().name}: {exc.details()}[/]")
            if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
                return  # suspended by qc: this person stops working on the project
            await asyncio.sleep(1.0)


def summarise(log: EventLog, truth: dict[str, str], work: list[str], golden_truth: dict[str, str]) -> dict[str, Any]:
    work_set = set(work)
    finals: dict[str, dict[str, Any]] = {}
    for event in log.by_topic["label.finalized"]:
        if event["item_id"] in work_set:
            finals[event["item_id"]] = event
    first_tier: dict[str, str] = {}
    for event in log.by_topic["item.routed"]:
        first_tier.setdefault(event["item_id"], event["tier"])
    tiers = Counter(first_tier[i] for i in work if i in first_tier)
    submitted = [e for e in log.by_topic["label.submitted"] if e["item_id"] in work_set]
    human = sum(1 for e in submitted if e["role"] != "expert")
    expert = sum(1 for e in submitted if e["role"] == "expert")
    correct = sum(1 for i, f in finals.items() if f["label"] == truth[i])
    auto = [i for i, f in finals.items() if f["provenance"] == "auto"]
    n = len(work)
    return {
        "items": n,
        "final_labels": len(finals),
        "final_accuracy": correct / len(finals) if finals else None,
        "tiers": {k: v / n for k, v in sorted(tiers.items())},
        "auto_accepted_error": (sum(finals[i]["label"] != truth[i] for i in auto) / len(auto)) if auto else None,
        "human_labels_per_item": human / n,
        "expert_labels_per_item": expert / n,
        "cost_per_item_usd": (human * PRICE_LABEL + expert * PRICE_EXPERT) / n,
        "manual_single_cost_per_item_usd": PRICE_LABEL,
        "provenance": dict(Counter(f["provenance"] for f in finals.values())),
        "models": [
            {"version": m["model_version"], "training_set_size": m["training_set_size"],
             "heldout_accuracy": m["heldout_metrics"].get("heldout_accuracy"),
             "thresholds": m["recommended_thresholds"]}
            for m in log.by_topic["model.updated"]
        ],
        "flags": dict(Counter(f["kind"] for f in log.by_topic["qc.flagged"])),
        "golden_accuracy": {a: correct / n for a, (correct, n, _, _) in golden_accuracy(log.by_topic,
                                                                                       golden_truth).items()},
        "dead_letters": len(log.by_topic["deadletter"]),
    }


def print_report(report: dict[str, Any], title: str = "BANKING77 with a simulated team") -> None:
    table = Table(title=f"labelmesh demo: {title}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    for key in ("items", "final_labels", "final_accuracy", "auto_accepted_error", "human_labels_per_item",
                "expert_labels_per_item", "cost_per_item_usd", "manual_single_cost_per_item_usd", "dead_letters"):
        table.add_row(key, fmt(report[key]))
    for tier, share in report["tiers"].items():
        table.add_row(f"tier {tier}", f"{share:.1%}")
    for m in report["models"]:
        table.add_row(f"model v{m['version']}", f"n={m['training_set_size']} held-out acc={fmt(m['heldout_accuracy'])}")
    for kind, count in report["flags"].items():
        table.add_row(f"flags {kind}", str(count))
    for who, acc in report["golden_accuracy"].items():
        table.add_row(f"golden accuracy {who}", f"{acc:.0%}")
    console.print(table)


@dataclass
class PipelineRun:
    """One run of the five services over a dataset sample: its event log and what the report needs beside it."""

    namespace: str
    project: str
    title: str
    out_dir: Path
    log: EventLog
    truth: dict[str, str]
    work_ids: list[str]
    golden_truth: dict[str, str]
    seconds: float
    mongo_uri: str
    encoder: str
    counts: Counter[str]


def split_rows(rows: list[Row], seed: int, bootstrap: int, golden: int, items: int,
               bootstrap_per_class: int | None = None) -> tuple[list[Row], list[Row], list[Row]]:
    """The bootstrap, golden and work rows of one shuffled order (the seed fixes it).

    bootstrap_per_class: the first that many rows of each class in that order make the bootstrap (`bootstrap` is
    then ignored), the cold start of a team that labels only a few examples per class; the rest keep their order.
    """
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    if bootstrap_per_class is None:
        return rows[:bootstrap], rows[bootstrap:bootstrap + golden], rows[bootstrap + golden:][:items]
    if bootstrap_per_class < 1:
        raise ValueError(f"bootstrap_per_class must be >= 1, got {bootstrap_per_class}")
    taken: Counter[str] = Counter()
    boot, rest = [], []
    for row in rows:
        if taken[row.label] < bootstrap_per_class:
            taken[row.label] += 1
            boot.append(row)
        else:
            rest.append(row)
    return boot, rest[:golden], rest[golden:][:items]


async def run_pipeline(items: int, bootstrap: int, encoder: str, seed: int, golden: int = 60,
                       timeout_s: float = 1800, dataset: Path | None = None,
                       env: dict[str, str] | None = None, bootstrap_per_class: int | None = None) -> PipelineRun:
    """Start the stack, bootstrap model v1, label `items` rows with the simulated default team over gRPC, stop.

    dataset: a directory in labelmesh.datasets' layout; None: the packaged BANKING77. env: more LABELMESH_*
    settings for every service (bench/live_quality.py). bootstrap_per_class: see split_rows. Kafka and FerretDB
    must be running; each run has its own namespace (topics and databases), left in place for later reading.
    """
    project = PROJECT if dataset is None else dataset_name(dataset)
    labels = categories(dataset)
    rows = load("train", dataset)
    title = f"{'BANKING77' if dataset is None else project} with a simulated team"
    base = CommonSettings()
    namespace = f"demo{int(time.time())}"
    prefix = f"{namespace}."
    out_dir = REPO_ROOT / "var" / "demo" / namespace
    admin_token = secrets.token_urlsafe(16)
    await create_topics(base.kafka_bootstrap, prefix)
    boot, gold, work = split_rows(rows, seed, bootstrap, golden, items, bootstrap_per_class)
    stack = Stack(
        env={"LABELMESH_NAMESPACE": namespace, "LABELMESH_TOPIC_PREFIX": prefix,
             "LABELMESH_KAFKA_BOOTSTRAP": base.kafka_bootstrap, "LABELMESH_MONGO_URI": base.mongo_uri,
             "LABELMESH_PRELABELER_ENCODER": encoder, "LABELMESH_GATEWAY_ADMIN_TOKEN": admin_token,
             "LABELMESH_TRAINER_FIRST_MODEL_MIN": str(int(len(boot) * 0.8)),
             "LABELMESH_TRAINER_RETRAIN_EVERY": "300", **(env or {})},
        log_dir=out_dir / "logs",
    )
    truth = {r.item_id: r.label for r in rows}
    log, stop_log, stop_team = EventLog(), asyncio.Event(), asyncio.Event()
    console.print(f"[bold]labelmesh demo[/] namespace={namespace}: starting {len(stack.processes)} service processes ({encoder} encoder)")
    started = time.monotonic()
    await stack.start_all()
    follower = asyncio.create_task(log.follow(base.kafka_bootstrap, prefix, [
        "item.routed", "label.submitted", "label.finalized", "model.updated", "qc.flagged", "deadletter"], stop_log))
    client = GatewayClient.balanced(stack.grpc_ports, admin_token)  # every gateway replica (LABELMESH_REPLICAS)
    counts: Counter[str] = Counter()
    try:
        await client.configure_project(project, labels, guidelines=BANKING77_GUIDELINES if dataset is None else
                                       f"Label each text with one of the {len(labels)} categories of {project}.")
        team = default_team(seed)
        tokens = {s.name: await client.create_annotator(s.name, s.role) for s in team}
        console.print(f"bootstrapping model v1 from {len(boot)} rows labelled by the internal team")
        await ingest_trusted(client, project, boot)  # what `labelmesh bootstrap` does with a file
        while not log.by_topic["model.updated"]:
            await asyncio.sleep(0.5)
        await client.ingest_items([pb.IngestItem(project=project, item_id=r.item_id, text=r.text,
                                                 golden_label=r.label, source="golden") for r in gold])
        workers = [asyncio.create_task(_annotate(client.as_user(tokens[s.name]), project, s, truth, stop_team, counts))
                   for s in team]
        work_ids = [r.item_id for r in work]
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            bar = progress.add_task("final labels", total=len(work))
            for i in range(0, len(work), 100):
                await client.ingest_items([pb.IngestItem(project=project, item_id=r.item_id, text=r.text,
                                                         source="demo") for r in work[i:i + 100]])
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                done = len({e["item_id"] for e in log.by_topic["label.finalized"]} & set(work_ids))
                progress.update(bar, completed=done,
                                description=f"final labels (human {counts['annotator']}, expert {counts['expert']})")
                if done >= len(work):
                    break
                await asyncio.sleep(0.5)
        stop_team.set()
        await asyncio.gather(*workers, return_exceptions=True)
        await asyncio.sleep(1.0)
    finally:
        stop_log.set()
        await follower
        await client.close()
        stack.stop_all()
    return PipelineRun(namespace, project, title, out_dir, log, truth, [r.item_id for r in work],
                       {r.item_id: r.label for r in gold}, time.monotonic() - started, base.mongo_uri, encoder, counts)


async def run_demo(items: int, bootstrap: int, encoder: str, seed: int, golden: int = 60,
                   timeout_s: float = 1800, dataset: Path | None = None) -> dict[str, Any]:
    """dataset: a directory in labelmesh.datasets' layout; None: the packaged BANKING77."""
    run = await run_pipeline(items, bootstrap, encoder, seed, golden, timeout_s, dataset)
    report = summarise(run.log, run.truth, run.work_ids, run.golden_truth)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    (run.out_dir / "report.json").write_text(json.dumps(report, indent=2))
    html = write_html(run.out_dir / "report.html", report, run.log.by_topic, run.truth, run.work_ids,
                      run.golden_truth, namespace=run.namespace, title=run.title)
    print_report(report, run.title)
    console.print(f"report written to {run.out_dir / 'report.json'} and {html}")
    return report
