"""Crash tests under load: SIGKILL each service mid-stream, restart Kafka, restart FerretDB; then prove nothing was lost.

    python -m bench.crash_recovery [--rate 4] [--max-items 5000]
    python -m bench.crash_recovery --replicas 2     # replicas: kill one of each, roll every service, scale out and in

The run has a Kafka broker and a FerretDB of its own (deploy/local's scripts on other ports, with a var
directory of its own), so restarting them disturbs nothing else on the machine. The five services run as
separate processes (labelmesh.stack). While items stream in through the gateway and simulated annotators
label over gRPC, one fault at a time:

    SIGKILL gateway, prelabeler, router, qc, trainer (each restarted at once), then restart Kafka, then FerretDB.

With --replicas N every service but the trainer runs N processes, annotators reach the gateways through
client-side round-robin over all their ports, and the faults are those of a Kubernetes deployment instead
(REPLICA_FAULTS): SIGKILL one replica of each service in turn, a rolling restart of every service (the new
process ready before the old one gets SIGTERM), then the prelabeler and router scaled to 1, 3 and back to 1.

For each fault it records how long the component took to be back (ready, or answering) and how long until
the pipeline produced again (the next final label after it was back). At the end, with every item labelled,
it checks the invariants of issue #7 against the real stores and topics:

- every acknowledged ingest has exactly one final label in qc, and every other service agrees with it
  (the trainer's example and the router's label are qc's latest version);
- no final label is duplicated: one event id per (item, version) on label.finalized, versions 1..n;
- no acknowledged submission is lost: each is on label.submitted and in qc's labels;
- consumer lag is zero for every service's groups, and nothing went to the dead-letter topic;
- no task slot was claimed twice: nobody answered one routed task twice, and no task got more answers than
  the annotators it asked for (read from item.routed and label.submitted, whatever the gateway stores).

Results go to bench/results/crash_recovery.json (and are printed); tests/e2e/test_crash_recovery.py runs a
smaller version and asserts the invariants.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiokafka import AIOKafkaConsumer
from pymongo import AsyncMongoClient

from bench._common import environment, write_result
from labelmesh.client import GatewayClient
from labelmesh.datasets import load
from labelmesh.events import read_lines
from labelmesh.infra import create_topics
from labelmesh.replay import consumer_lag
from labelmesh.runtime.settings import CommonSettings
from labelmesh.stack import SERVICES, Stack, instance_name
from schemas.events import derived_id
from schemas.rpc import gateway_pb2 as pb

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / "deploy" / "local"
PROJECT = "crash"
# Twelve intents: about 1,500 rows, enough to keep items coming through every fault at a few per second.
LABELS = ["card_arrival", "exchange_rate", "lost_or_stolen_card", "top_up_failed", "pin_blocked",
          "cash_withdrawal_charge", "request_refund", "transfer_fee_charged", "declined_cash_withdrawal",
          "direct_debit_payment_not_recognised", "wrong_amount_of_cash_received", "transaction_charged_twice"]
ADMIN = "crash-admin-token"
# Statuses after which the same call is simply made again (the component is coming back).
RETRY = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN,
         grpc.StatusCode.INTERNAL, grpc.StatusCode.CANCELLED}
CALL_DEADLINE_S = 15.0


@dataclass
class PrivateInfra:
    """Kafka and FerretDB started with deploy/local's scripts on their own ports and data directory."""

    var_dir: Path
    kafka_port: int = 19092
    controller_port: int = 19093
    mongo_port: int = 37017

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def mongo_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongo_port}/"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "LABELMESH_VAR": str(self.var_dir), "LABELMESH_CACHE": str(REPO / ".cache"),
                "KAFKA_PORT": str(self.kafka_port), "KAFKA_CONTROLLER_PORT": str(self.controller_port),
                "MONGO_PORT": str(self.mongo_port), "LABELMESH_KAFKA_BOOTSTRAP": self.bootstrap}

    def script(self, name: str, *args: str) -> None:
        subprocess.run(["bash", str(LOCAL / name), *args], env=self._env(), check=True,
                       stdout=subprocess.DEVNULL)

    def up(self) -> None:
        self.script("up.sh")

    def down(self) -> None:
        self.script("down.sh")


@dataclass
class Fault:
    action: str
    started: float
    back: float | None = None
    resumed: float | None = None

    def report(self) -> dict[str, Any]:
        return {"action": self.action,
                "back_s": None if self.back is None else round(self.back - self.started, 2),
                "first_final_after_s": None if self.resumed is None else round(self.resumed - self.started, 2)}


@dataclass
class Load:
    """What the clients were told succeeded; the invariants are checked against it."""

    ingested: set[str] = field(default_factory=set)
    submissions: set[str] = field(default_factory=set)
    retries: Counter[str] = field(default_factory=Counter)
    finals_seen: list[float] = field(default_factory=list)


async def _call(load: Load, what: str, make: Any) -> Any:
    """One gRPC call, made again (same request, same idempotency key) until the gateway answers for real."""
    while True:
        try:
            return await asyncio.wait_for(make(), CALL_DEADLINE_S)
        except TimeoutError:
            load.retries[f"{what}: no answer in {CALL_DEADLINE_S:.0f}s"] += 1
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRY:
                raise
            load.retries[f"{what}: {exc.code().name}"] += 1
        await asyncio.sleep(0.5)


async def _ingest(client: GatewayClient, rows: list[Any], rate: float, load: Load, until: asyncio.Event) -> None:
    """Items at a steady rate until the faults are over (or the rows run out): every fault meets a busy pipeline."""
    batch = 5
    for start in range(0, len(rows), batch):
        if until.is_set():
            return
        chunk = rows[start:start + batch]
        items = [pb.IngestItem(project=PROJECT, item_id=r.item_id, text=r.text, source="crash") for r in chunk]
        response = await _call(load, "ingest", lambda items=items: client.ingest_items(items))
        load.ingested.update(response.item_ids)
        await asyncio.sleep(batch / rate)


async def _annotate(client: GatewayClient, name: str, truth: dict[str, str], stop: asyncio.Event, load: Load) -> None:
    """A perfect annotator: the point here is what survives a crash, not label quality."""
    while not stop.is_set():
        task = await _call(load, "lease", lambda: client.lease(PROJECT))
        if task is None:
            await asyncio.sleep(1.0)  # as a tool would poll: each lease call is a query of the task queue
            continue
        key = f"{name}-{task.task_id}"
        try:
            response = await _call(load, "submit", lambda: client.submit(task.task_id, truth[task.item_id], key=key,
                                                                          time_spent_ms=500))
        except grpc.aio.AioRpcError as exc:
            # The lease ran out while the gateway was down: the task went back to the queue.
            load.retries[f"submit refused: {exc.code().name}"] += 1
            continue
        load.submissions.add(response.submission_id)


async def _watch_finals(bootstrap: str, prefix: str, stop: asyncio.Event, load: Load) -> None:
    """Arrival times of label.finalized records, read as any consumer would (it reconnects across a restart)."""
    consumer = AIOKafkaConsumer(prefix + "label.finalized", bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="latest", enable_auto_commit=False)
    await consumer.start()
    try:
        while not stop.is_set():
            try:
                batches = await consumer.getmany(timeout_ms=300)
            except Exception:  # noqa: BLE001 - the broker is being restarted; keep reading when it is back
                await asyncio.sleep(0.5)
                continue
            now = time.monotonic()
            load.finals_seen.extend(now for records in batches.values() for _ in records)
    finally:
        await consumer.stop()


async def _wait(check: Any, timeout: float, what: str, interval: float = 0.25) -> float:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout:.0f}s")
        await asyncio.sleep(interval)
    return time.monotonic()


async def _fault(action: str, stack: Stack, infra: PrivateInfra, load: Load) -> Fault:
    fault = Fault(action, time.monotonic())
    print(f"  fault: {action}", flush=True)
    words = action.split()
    if action.startswith("SIGKILL "):
        name = words[1]
        process = stack.processes[name].process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait)
        stack.start(name)
        await stack.wait_ready((name,), timeout=180)
    elif action.startswith("rolling restart "):
        await stack.rolling_restart(words[2])
    elif action.startswith("scale "):
        await stack.scale(words[1], int(words[2]))
    elif action == "restart Kafka":
        await asyncio.to_thread(infra.script, "kafka.sh", "stop")
        await asyncio.to_thread(infra.script, "kafka.sh", "start")
    elif action == "restart FerretDB":
        await asyncio.to_thread(infra.script, "ferretdb.sh", "stop")
        await asyncio.to_thread(infra.script, "ferretdb.sh", "start")
    fault.back = time.monotonic()

    async def resumed() -> bool:
        return any(t > fault.back for t in load.finals_seen)

    try:
        fault.resumed = await _wait(resumed, 180, f"a final label after {action}")
    except TimeoutError:
        fault.resumed = None
    return fault


async def _lag(settings: CommonSettings) -> dict[str, int]:
    """Unconsumed records per consumer group, for every service's groups."""
    lag: dict[str, int] = {}
    for service in SERVICES:
        lag.update(await consumer_lag(settings, service))
    return lag


async def check_invariants(settings: CommonSettings, load: Load) -> dict[str, Any]:
    """Everything the clients were told succeeded, looked up in the services' stores and on the topics."""
    mongo: AsyncMongoClient = AsyncMongoClient(settings.mongo_uri, tz_aware=True)
    try:
        qc = mongo[settings.database_name("qc")]
        finals = {d["item_id"]: d["final"] async for d in qc["items"].find(
            {"project": PROJECT, "final": {"$exists": True}}, {"item_id": 1, "final.label": 1, "final.version": 1})}
        qc_labels = {d["_id"] async for d in qc["labels"].find({"project": PROJECT}, {"_id": 1})}
        trainer = {d["item_id"]: (d.get("label"), d.get("version")) async for d in
                   mongo[settings.database_name("trainer")]["examples"].find(
                       {"project": PROJECT}, {"item_id": 1, "label": 1, "version": 1})}
        router = {d["item_id"]: d.get("label") async for d in mongo[settings.database_name("router")]["items"].find(
            {"project": PROJECT}, {"item_id": 1, "label": 1})}
        open_tasks = await mongo[settings.database_name("gateway")]["tasks"].count_documents(
            {"project": PROJECT, "status": "open", "item_id": {"$in": list(finals)}})
    finally:
        await mongo.close()
    finalized = await _read_topic(settings, "label.finalized")
    submitted_events = await _read_topic(settings, "label.submitted")
    submitted = {r["event_id"] for r in submitted_events}
    required = {r["event_id"]: r["required_annotators"] for r in await _read_topic(settings, "item.routed")}
    answers: dict[str, set[str]] = defaultdict(set)  # task -> annotators who answered it
    per_annotator: Counter[tuple[str, str]] = Counter()  # (task, annotator) -> distinct submissions
    for r in submitted_events:
        if r["project"] == PROJECT and not r.get("golden") and not r.get("session_id"):
            answers[r["task_id"]].add(r["annotator_id"])
            per_annotator[(r["task_id"], r["annotator_id"])] += 1
    dead = await _read_topic(settings, "deadletter")
    ids_per_version: dict[tuple[str, int], set[str]] = defaultdict(set)
    versions: dict[str, set[int]] = defaultdict(set)
    for r in finalized:
        if r["project"] == PROJECT:
            ids_per_version[(r["item_id"], r["version"])].add(r["event_id"])
            versions[r["item_id"]].add(r["version"])
    submission_events = {derived_id("submitted", s) for s in load.submissions}
    lag = await _lag(settings)
    return {
        "items_ingested": len(load.ingested),
        "items_with_final": len(load.ingested & finals.keys()),
        "items_without_final": sorted(load.ingested - finals.keys())[:20],
        "final_label_records": sum(1 for r in finalized if r["project"] == PROJECT),
        "duplicated_final_versions": sorted(f"{i} v{v}" for (i, v), ids in ids_per_version.items() if len(ids) > 1)[:20],
        "items_with_gaps_in_versions": sorted(i for i, vs in versions.items() if vs != set(range(1, max(vs) + 1)))[:20],
        "finals_missing_on_topic": sorted(i for i in finals if finals[i]["version"] not in versions.get(i, ()))[:20],
        "trainer_disagrees": sorted(i for i, f in finals.items() if trainer.get(i) != (f["label"], f["version"]))[:20],
        "router_disagrees": sorted(i for i, f in finals.items() if router.get(i) != f["label"])[:20],
        "open_tasks_for_final_items": open_tasks,
        "submissions_acknowledged": len(load.submissions),
        "submissions_missing_on_topic": len(submission_events - submitted),
        "submissions_missing_in_qc": len(submission_events - qc_labels),
        "tasks_answered_twice_by_one_annotator": sorted(f"{t} {a}" for (t, a), n in per_annotator.items() if n > 1)[:20],
        "tasks_with_more_answers_than_slots": sorted(t for t, who in answers.items()
                                                     if t in required and len(who) > required[t])[:20],
        "consumer_lag": lag,
        "dead_letters": [d.get("reason", "")[:300] for d in dead],
    }


async def _read_topic(settings: CommonSettings, topic: str) -> list[dict[str, Any]]:
    """Every event on a topic up to its end now, read with `labelmesh events`' reader."""
    return [line.doc.get("event", {}) async for line in read_lines(settings, [topic])]


def broken(invariants: dict[str, Any]) -> list[str]:
    """The invariants that do not hold (empty when the run lost nothing)."""
    problems = []
    if invariants["items_with_final"] != invariants["items_ingested"]:
        problems.append(f"items without a final label: {invariants['items_without_final']}")
    for name in ("duplicated_final_versions", "items_with_gaps_in_versions", "finals_missing_on_topic",
                 "trainer_disagrees", "router_disagrees", "dead_letters", "tasks_answered_twice_by_one_annotator",
                 "tasks_with_more_answers_than_slots"):
        if invariants[name]:
            problems.append(f"{name}: {invariants[name]}")
    for name in ("open_tasks_for_final_items", "submissions_missing_on_topic", "submissions_missing_in_qc"):
        if invariants[name]:
            problems.append(f"{name}: {invariants[name]}")
    if any(invariants["consumer_lag"].values()):
        problems.append(f"consumer lag: {invariants['consumer_lag']}")
    return problems


async def run(var_dir: Path, max_items: int, rate: float, faults: list[str], seed: int = 7,
              settle_timeout: float = 600, replicas: int = 1) -> dict[str, Any]:
    infra = PrivateInfra(var_dir)
    if var_dir.exists():  # a clean start: the checks count everything in these stores and topics
        await asyncio.to_thread(infra.down)
        shutil.rmtree(var_dir)
    await asyncio.to_thread(infra.up)
    namespace, prefix = "crash", "crash."
    await create_topics(infra.bootstrap, prefix)
    settings = CommonSettings(kafka_bootstrap=infra.bootstrap, mongo_uri=infra.mongo_uri, namespace=namespace,
                              topic_prefix=prefix)
    stack = Stack(
        env={"LABELMESH_KAFKA_BOOTSTRAP": infra.bootstrap, "LABELMESH_MONGO_URI": infra.mongo_uri,
             "LABELMESH_NAMESPACE": namespace, "LABELMESH_TOPIC_PREFIX": prefix,
             "LABELMESH_PRELABELER_ENCODER": "hashing", "LABELMESH_GATEWAY_ADMIN_TOKEN": ADMIN,
             "LABELMESH_GATEWAY_GOLDEN_RATE": "0.0", "LABELMESH_TRAINER_FIRST_MODEL_MIN": "100",
             "LABELMESH_TRAINER_RETRAIN_EVERY": "300", "LABELMESH_GATEWAY_LEASE_SECONDS": "60",
             "LABELMESH_MONGO_SOCKET_TIMEOUT_S": "20",
             # A killed consumer's partitions wait this long for it before the restarted one gets them.
             "LABELMESH_SESSION_TIMEOUT_MS": "15000"},
        log_dir=var_dir / "services", port_offset=300, grpc_port=50351,
        replicas={s: 1 if s == "trainer" else replicas for s in SERVICES},
    )
    rows = [r for r in load("train") if r.label in LABELS]
    random.Random(seed).shuffle(rows)
    bootstrap_rows, stream = rows[:150], rows[150:150 + max_items]
    truth = {r.item_id: r.label for r in rows}
    state = Load()
    stop, stop_watch = asyncio.Event(), asyncio.Event()
    # Every port a gateway replica may take during the run (rolling restarts start replacements on fresh ones):
    # gRPC's round-robin spreads calls over those that answer, as a headless Service would on Kubernetes.
    client = GatewayClient.balanced([stack.grpc_port + n for n in range(MAX_GATEWAYS)], ADMIN)
    mongo: AsyncMongoClient | None = None
    started = time.monotonic()
    try:
        await stack.start_all()
        await client.configure_project(PROJECT, LABELS, guidelines="Pick the customer's intent.")
        tokens = {f"ann-{i}": await client.create_annotator(f"ann-{i}") for i in range(4)}
        for n in range(2):
            tokens[f"expert-{n}"] = await client.create_annotator(f"expert-{n}", role="expert")
        await client.ingest_items([pb.IngestItem(project=PROJECT, item_id=r.item_id, text=r.text, trusted_label=r.label)
                                   for r in bootstrap_rows])
        mongo = AsyncMongoClient(infra.mongo_uri)

        async def model_ready() -> bool:
            return await mongo[settings.database_name("prelabeler")]["models"].count_documents({}) > 0

        await _wait(model_ready, 300, "model v1")
        watcher = asyncio.create_task(_watch_finals(infra.bootstrap, prefix, stop_watch, state))
        workers = [asyncio.create_task(_annotate(client.as_user(t), n, truth, stop, state)) for n, t in tokens.items()]
        faults_over = asyncio.Event()
        ingest = asyncio.create_task(_ingest(client, stream, rate, state, faults_over))
        await asyncio.sleep(5)
        done: list[Fault] = []
        for action in faults:
            done.append(await _fault(action, stack, infra, state))
            await asyncio.sleep(3)
        faults_over.set()
        await ingest
        load_s = time.monotonic() - started

        async def all_final() -> bool:
            n = await mongo[settings.database_name("qc")]["items"].count_documents(
                {"project": PROJECT, "final": {"$exists": True}, "trusted_label": None})
            return n >= len(state.ingested)

        # Every 3 s: counting reads every qc item on FerretDB, which the run should not spend its database on.
        settled_at = await _wait(all_final, settle_timeout, "a final label for every item", interval=3.0)
        stop.set()
        await asyncio.gather(*workers)

        async def no_lag() -> bool:
            return not any((await _lag(settings)).values())

        await _wait(no_lag, 120, "consumer lag back to zero")
        stop_watch.set()
        await watcher
        invariants = await check_invariants(settings, state)
        exit_codes = stack.stop_all()
    finally:
        if mongo is not None:
            await mongo.close()
        stop.set()
        stop_watch.set()
        await client.close()
        stack.stop_all()
        await asyncio.to_thread(infra.down)
    return {
        "items": len(state.ingested), "ingest_rate_per_s": rate, "bootstrap_rows": len(bootstrap_rows),
        "faults": [f.report() for f in done],
        "seconds_to_all_final": round(settled_at - started, 1), "load_seconds": round(load_s, 1),
        "client_retries": dict(state.retries), "invariants": invariants, "broken": broken(invariants),
        "service_exit_codes": exit_codes,
    }


FAULTS = [*(f"SIGKILL {name}" for name in SERVICES), "restart Kafka", "restart FerretDB"]
# With replicas: what a Kubernetes deployment does to them (the trainer is a singleton, so its own are kept).
REPLICA_FAULTS = [
    *(f"SIGKILL {instance_name(s, 0 if s == 'trainer' else 1)}" for s in SERVICES),
    *(f"rolling restart {s}" for s in SERVICES),
    "scale prelabeler 1", "scale router 1", "scale prelabeler 3", "scale router 3", "scale prelabeler 1", "scale router 1",
]
# A rolling restart of two gateways starts replacements on the next two ports.
MAX_GATEWAYS = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-items", type=int, default=5000, help="ingestion stops when the faults are over")
    parser.add_argument("--rate", type=float, default=4.0, help="items ingested per second")
    parser.add_argument("--var", type=Path, default=REPO / "var" / "crash")
    parser.add_argument("--replicas", type=int, default=1, help="processes per service (the trainer runs one)")
    args = parser.parse_args()
    faults = FAULTS if args.replicas == 1 else REPLICA_FAULTS
    result = asyncio.run(run(args.var, args.max_items, args.rate, faults, replicas=args.replicas))
    payload = {"environment": environment(), "replicas": args.replicas, **result}
    path = write_result("crash_recovery" if args.replicas == 1 else "replicas", payload)
    print(json.dumps(payload, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
