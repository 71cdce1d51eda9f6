"""Crash tests under load: SIGKILL each service mid-stream, restart Kafka, restart FerretDB; then prove nothing was lost.

    python -m bench.crash_recovery [--rate 4] [--max-items 5000]
    python -m bench.crash_recovery --replicas 2     # replicas: kill one of each, roll every service, scale out and in

The run has a Kafka broker and a FerretDB of its own (deploy/local's scripts on other ports, with a var
directory of its own), so restarting them disturbs nothing else on the machine. The five services run as
separate processes (labelmesh.stack). While items stream in through the gateway and simulated annotators
label over gRPC, one fault at a time:

    SIGKILL gateway, prelabeler, router, qc, trainer (each restarted at once), then restart Kafka, then FerretDB;
    then the gateway SIGKILLed while a client that never retries has a SubmitLabel or an IngestItems call in
    flight (a few delays after the call starts), then FerretDB stopped for FERRETDB_OUTAGE_S, longer than the
    services' MongoDB server-selection timeout (labelmesh/runtime/service.py), so their commands fail rather
    than wait.

Golden items are part of the stream (GOLDEN_EVERY; the gateway injects them at its default golden rate), one
annotator answers 5% of everything wrongly (so golden accuracy is measured, not always 1), and one annotator
never retries: a call that fails because the gateway died is given up (its label may or may not stand). A
supervisor restarts any service process that exits on its own, as Kubernetes would, and records it.

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
  the annotators it asked for (read from item.routed and label.submitted, whatever the gateway stores);
- what the gateway stored reached everyone, whether or not its client was told (a client that gave up): every
  stored item has a final label, every stored submission is on label.submitted and in qc, nothing was
  published that the gateway did not store, and its outbox is empty;
- golden items: each one's final label is its golden answer (version 1, imported, marked golden, held out by
  the trainer), no golden answer is a vote, no golden item is served as an ordinary task or shown as a
  neighbour, nobody answers one golden item twice, and qc's golden count and golden-correct count per
  annotator equal what label.submitted says (each golden answer counted once, right or wrong as it was).

Results go to bench/results/crash_recovery.json (and are printed); tests/e2e/test_crash_recovery.py runs a
smaller version and asserts the invariants.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
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
# One item in GOLDEN_EVERY of the stream is golden (plus GOLDEN_AT_START before it), so golden answers come in
# through every fault; the gateway serves them at its own default rate (services/gateway/domain/golden.py).
GOLDEN_EVERY = 15
GOLDEN_AT_START = 30
# The annotator who errs, on this share of items (by item id, whatever the item), and the one who never retries.
ERRING, ERROR_RATE = "ann-2", 0.15
NO_RETRY = "ann-3"
# The clients of the mid-call gateway kills, one per kill (a tool that sends each request once, and has no
# lease left from an earlier kill: the gateway would hand that one back, and submitting it again is a retry).
ONCE = "ann-once"
# Items ingested in one call just before the FerretDB outage, so every consumer has events in hand when it starts.
OUTAGE_BURST = 100
# The services give up on a MongoDB server after serverSelectionTimeoutMS (10 s, labelmesh/runtime/service.py):
# an outage three times as long makes every command in flight fail, instead of waiting for the server to return.
SERVER_SELECTION_TIMEOUT_S = 10.0
FERRETDB_OUTAGE_S = 3 * SERVER_SELECTION_TIMEOUT_S


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
    ready: float | None = None  # every running service ready again (after an infrastructure fault)
    client: dict[str, Any] | None = None  # what the client that never retries was told (mid-call kills)

    def report(self) -> dict[str, Any]:
        def since(t: float | None) -> float | None:
            return None if t is None else round(t - self.started, 2)

        return {"action": self.action, "back_s": since(self.back), "first_final_after_s": since(self.resumed),
                **({"services_ready_after_s": since(self.ready)} if self.ready is not None else {}),
                **({"client": self.client} if self.client is not None else {})}


@dataclass
class Load:
    """What the clients were told succeeded; the invariants are checked against it."""

    ingested: set[str] = field(default_factory=set)
    submissions: set[str] = field(default_factory=set)
    retries: Counter[str] = field(default_factory=Counter)
    finals_seen: list[float] = field(default_factory=list)
    golden: dict[str, str] = field(default_factory=dict)  # acknowledged golden items and their answers
    # Requests a client gave up on when the gateway died (never sent again): what they were, and why.
    abandoned: list[dict[str, Any]] = field(default_factory=list)
    # Service processes that exited on their own and the supervisor started again.
    restarts: list[dict[str, Any]] = field(default_factory=list)


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


async def _call_once(load: Load, what: str, make: Any) -> tuple[Any, str | None]:
    """One gRPC call sent once, as a tool that never retries: (the answer, None), or (None, why it gave up)."""
    try:
        return await asyncio.wait_for(make(), CALL_DEADLINE_S), None
    except TimeoutError:
        why = f"no answer in {CALL_DEADLINE_S:.0f}s"
    except grpc.aio.AioRpcError as exc:
        if exc.code() not in RETRY:
            raise
        why = exc.code().name
    load.retries[f"{what} given up (no retry): {why}"] += 1
    return None, why


def ingest_item(row: Any, golden: bool) -> pb.IngestItem:
    return pb.IngestItem(project=PROJECT, item_id=row.item_id, text=row.text, source="crash",
                         golden_label=row.label if golden else "")


def acknowledged(load: Load, items: list[pb.IngestItem], response: pb.IngestItemsResponse) -> None:
    load.ingested.update(response.item_ids)
    answers = {i.item_id: i.golden_label for i in items if i.golden_label}
    load.golden.update({i: answers[i] for i in response.item_ids if i in answers})


async def _ingest(client: GatewayClient, rows: list[Any], rate: float, load: Load, until: asyncio.Event) -> None:
    """Items at a steady rate until the faults are over (or the rows run out): every fault meets a busy pipeline."""
    batch = 5
    for start in range(0, len(rows), batch):
        if until.is_set():
            return
        chunk = rows[start:start + batch]
        items = [ingest_item(r, golden=(start + n) % GOLDEN_EVERY == 0) for n, r in enumerate(chunk)]
        response = await _call(load, "ingest", lambda items=items: client.ingest_items(items))
        acknowledged(load, items, response)
        await asyncio.sleep(batch / rate)


def answer(name: str, item_id: str, truth: dict[str, str]) -> str:
    """The truth, except for ERRING on ERROR_RATE of the items (picked by id, so golden or not alike)."""
    digest = int.from_bytes(hashlib.sha256(f"{name}/{item_id}".encode()).digest()[:4], "big")
    if name != ERRING or digest % 1000 >= ERROR_RATE * 1000:
        return truth[item_id]
    return next(label for label in LABELS[digest % len(LABELS):] + LABELS if label != truth[item_id])


async def _annotate(client: GatewayClient, name: str, truth: dict[str, str], stop: asyncio.Event, load: Load,
                    retry: bool = True) -> None:
    """An annotator who labels right (but for ERRING): the point here is what survives a crash, not label quality.

    With retry=False a call that fails because the gateway died is given up, never sent again: a failed
    submit is abandoned (the gateway may or may not have kept it), and the next call is a fresh lease.
    """
    while not stop.is_set():
        if retry:
            task = await _call(load, "lease", lambda: client.lease(PROJECT))
        else:
            task, _ = await _call_once(load, "lease", lambda: client.lease(PROJECT))
        if task is None:
            await asyncio.sleep(1.0)  # as a tool would poll: each lease call is a query of the task queue
            continue
        key = f"{name}-{task.task_id}"
        label = answer(name, task.item_id, truth)
        make = lambda: client.submit(task.task_id, label, key=key, time_spent_ms=500)  # noqa: E731
        try:
            if retry:
                response = await _call(load, "submit", make)
            else:
                response, why = await _call_once(load, "submit", make)
                if response is None:
                    load.abandoned.append({"call": "submit", "submission_id": f"{name}/{key}", "why": why})
                    continue
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


@dataclass
class Run:
    """What a fault acts on: the stack, its infrastructure, the load, and the client that never retries."""

    stack: Stack
    infra: PrivateInfra
    load: Load
    admin: GatewayClient  # the ingests sent once (ingest needs the admin role), and ONCE's tokens
    truth: dict[str, str]
    spare: list[Any]  # rows not streamed, for the mid-ingest kills and the outage's burst
    once: int = 0  # ONCE clients made so far
    # Held while a fault changes the stack's processes itself, so the supervisor leaves them alone.
    changing: asyncio.Lock = field(default_factory=asyncio.Lock)


async def _kill(stack: Stack, name: str) -> None:
    process = stack.processes[name].process
    assert process is not None
    process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(process.wait)


async def _mid_call(run: Run, call: str, delay_s: float) -> dict[str, Any]:
    """The gateway SIGKILLed `delay_s` after a client that never retries sent one SubmitLabel or IngestItems;
    what the client was told. Its request is recorded as abandoned when it failed (the checks then find out
    whether the gateway had kept it, and if so that it reached everyone)."""
    load = run.load
    if call == "submit":
        name = f"{ONCE}-{run.once}"
        run.once += 1
        once = run.admin.as_user(await _call(load, "create annotator", lambda: run.admin.create_annotator(name)))
        task = None
        while task is None:  # leased while the gateway is up, with retries: only the submit is sent once
            task = await _call(load, "lease", lambda: once.lease(PROJECT))
            if task is None:
                await asyncio.sleep(0.5)
        key = f"{name}-{task.task_id}"
        label = run.truth[task.item_id]
        pending = asyncio.create_task(_call_once(load, "submit", lambda: once.submit(
            task.task_id, label, key=key, time_spent_ms=500)))
        what = {"call": "submit", "submission_id": f"{name}/{key}", "item_id": task.item_id}
    else:
        rows, run.spare[:] = run.spare[:5], run.spare[5:]
        items = [ingest_item(r, golden=n == 0) for n, r in enumerate(rows)]
        pending = asyncio.create_task(_call_once(load, "ingest", lambda: run.admin.ingest_items(items)))
        what = {"call": "ingest", "item_ids": [i.item_id for i in items]}
    await asyncio.sleep(delay_s)
    await _kill(run.stack, "gateway")
    response, why = await pending
    if response is None:
        load.abandoned.append({**what, "why": why})
        return {**what, "told": f"failed: {why}"}
    if call == "submit":
        load.submissions.add(response.submission_id)
    else:
        acknowledged(load, items, response)
    return {**what, "told": "acknowledged"}


async def _all_ready(stack: Stack) -> float:
    """When every running service process answers /ready again."""
    await stack.wait_ready([n for n, p in stack.processes.items() if p.running], timeout=300)
    return time.monotonic()


async def _fault(action: str, run: Run) -> Fault:
    stack, infra, load = run.stack, run.infra, run.load
    fault = Fault(action, time.monotonic())
    print(f"  fault: {action}", flush=True)
    words = action.split()
    if action.startswith("SIGKILL gateway mid-"):
        async with run.changing:
            fault.client = await _mid_call(run, words[2].removeprefix("mid-"), int(words[3].removesuffix("ms")) / 1000)
            stack.start("gateway")
            await stack.wait_ready(("gateway",), timeout=180)
    elif action.startswith("SIGKILL "):
        async with run.changing:
            await _kill(stack, words[1])
            stack.start(words[1])
            await stack.wait_ready((words[1],), timeout=180)
    elif action.startswith("rolling restart "):
        async with run.changing:
            await stack.rolling_restart(words[2])
    elif action.startswith("scale "):
        async with run.changing:
            await stack.scale(words[1], int(words[2]))
    elif action == "restart Kafka":
        await asyncio.to_thread(infra.script, "kafka.sh", "stop")
        await asyncio.to_thread(infra.script, "kafka.sh", "start")
    elif action == "restart FerretDB":
        await asyncio.to_thread(infra.script, "ferretdb.sh", "stop")
        await asyncio.to_thread(infra.script, "ferretdb.sh", "start")
    elif action.startswith("FerretDB outage "):
        rows, run.spare[:] = run.spare[:OUTAGE_BURST], run.spare[OUTAGE_BURST:]
        burst = [ingest_item(r, golden=n % GOLDEN_EVERY == 0) for n, r in enumerate(rows)]
        acknowledged(load, burst, await _call(load, "ingest", lambda: run.admin.ingest_items(burst)))
        # Nothing answers for longer than a server selection waits: commands fail, they do not just stall.
        await asyncio.to_thread(infra.script, "ferretdb.sh", "stop")
        await asyncio.sleep(float(words[2].removesuffix("s")))
        await asyncio.to_thread(infra.script, "ferretdb.sh", "start")
    fault.back = time.monotonic()
    if not action.startswith(("SIGKILL ", "rolling ", "scale ")):
        try:
            fault.ready = await _all_ready(stack)
        except TimeoutError:
            fault.ready = None

    async def resumed() -> bool:
        return any(t > fault.back for t in load.finals_seen)

    try:
        fault.resumed = await _wait(resumed, 180, f"a final label after {action}")
    except TimeoutError:
        fault.resumed = None
    return fault


async def _supervise(run: Run, stop: asyncio.Event, started: float) -> None:
    """Kubernetes' part: a service process that exits on its own (not stopped by a fault) is started again."""
    while not stop.is_set():
        if not run.changing.locked():
            for name, proc in run.stack.processes.items():
                code = None if proc.process is None else proc.process.poll()
                if code not in (None, 0):  # 0: stopped by a scale-in or a rollout, and meant to stay stopped
                    tail = proc.log_path.read_text(errors="replace")[-600:]
                    run.load.restarts.append({"process": name, "exit_code": code,
                                              "at_s": round(time.monotonic() - started, 1), "log_tail": tail})
                    print(f"  supervisor: {name} exited with {code}; starting it again", flush=True)
                    run.stack.start(name)
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass


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
        gateway = mongo[settings.database_name("gateway")]
        open_tasks = await gateway["tasks"].count_documents(
            {"project": PROJECT, "status": "open", "item_id": {"$in": list(finals)}})
        # What the gateway kept, whether or not its client heard so (bootstrap items are trusted, not streamed).
        stored = [d async for d in gateway["items"].find({"project": PROJECT},
                                                          {"item_id": 1, "golden_label": 1, "trusted_label": 1})]
        stored_items = {d["item_id"]: d.get("golden_label") for d in stored if not d.get("trusted_label")}
        stored_ids = {d["item_id"] for d in stored}
        stored_submissions = {d["_id"] async for d in gateway["submissions"].find({}, {"_id": 1})}
        outbox_left = await gateway["outbox"].count_documents({})
        qc_items = {d["item_id"]: d async for d in qc["items"].find(
            {"project": PROJECT}, {"item_id": 1, "golden_label": 1, "votes": 1})}
        golden_tally = {d["annotator"]: (d.get("golden_n", 0), d.get("golden_correct", 0)) async for d in
                        qc["annotators"].find({"project": PROJECT},
                                              {"annotator": 1, "golden_n": 1, "golden_correct": 1})}
        holdout = {d["item_id"]: (d.get("golden"), d.get("holdout")) async for d in
                   mongo[settings.database_name("trainer")]["examples"].find(
                       {"project": PROJECT}, {"item_id": 1, "golden": 1, "holdout": 1})}
    finally:
        await mongo.close()
    finalized = await _read_topic(settings, "label.finalized")
    submitted_events = await _read_topic(settings, "label.submitted")
    submitted = {r["event_id"] for r in submitted_events}
    routed = [r for r in await _read_topic(settings, "item.routed") if r["project"] == PROJECT]
    required = {r["event_id"]: r["required_annotators"] for r in routed}
    ingested_on_topic = {r["item_id"] for r in await _read_topic(settings, "item.ingested") if r["project"] == PROJECT}
    answers: dict[str, set[str]] = defaultdict(set)  # task -> annotators who answered it
    # (task, annotator) -> distinct submissions: the same event twice on the topic (a producer's retry, a relay
    # after a publish whose acknowledgement was lost) is one answer, which every consumer drops by event id.
    per_annotator: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in submitted_events:
        if r["project"] == PROJECT and not r.get("golden") and not r.get("session_id"):
            answers[r["task_id"]].add(r["annotator_id"])
            per_annotator[(r["task_id"], r["annotator_id"])].add(r["event_id"])
    dead = await _read_topic(settings, "deadletter")
    ids_per_version: dict[tuple[str, int], set[str]] = defaultdict(set)
    versions: dict[str, set[int]] = defaultdict(set)
    for r in finalized:
        if r["project"] == PROJECT:
            ids_per_version[(r["item_id"], r["version"])].add(r["event_id"])
            versions[r["item_id"]].add(r["version"])
    submission_events = {derived_id("submitted", s) for s in load.submissions}
    stored_events = {derived_id("submitted", s) for s in stored_submissions}
    abandoned_submissions = [a["submission_id"] for a in load.abandoned if a["call"] == "submit"]
    abandoned_items = [i for a in load.abandoned if a["call"] == "ingest" for i in a["item_ids"]]
    golden = {i: g for i, g in stored_items.items() if g}
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
        "tasks_answered_twice_by_one_annotator": sorted(f"{t} {a}" for (t, a), ids in per_annotator.items()
                                                        if len(ids) > 1)[:20],
        "tasks_with_more_answers_than_slots": sorted(t for t, who in answers.items()
                                                     if t in required and len(who) > required[t])[:20],
        "consumer_lag": lag,
        "dead_letters": [d.get("reason", "")[:300] for d in dead],
        # A client that gave up: what it sent may or may not have been kept; whatever was kept reached everyone.
        "requests_given_up": len(load.abandoned),
        "given_up_submissions_kept": sorted(s for s in abandoned_submissions if s in stored_submissions),
        "given_up_items_kept": sorted(i for i in abandoned_items if i in stored_items),
        "acknowledged_items_not_stored": sorted(load.ingested - stored_items.keys())[:20],
        "stored_items_without_final": sorted(stored_items.keys() - finals.keys())[:20],
        "items_published_not_stored": sorted(ingested_on_topic - stored_ids)[:20],
        "stored_submissions_missing_on_topic": sorted(stored_events - submitted)[:20],
        "stored_submissions_missing_in_qc": sorted(stored_events - qc_labels)[:20],
        "submissions_published_not_stored": sorted(r["event_id"] for r in submitted_events
                                                   if r["project"] == PROJECT and r["event_id"] not in stored_events)[:20],
        "outbox_records_left": outbox_left,
        **golden_invariants(golden, finals, finalized, submitted_events, routed, qc_items, golden_tally, holdout),
    }


def golden_invariants(golden: dict[str, str], finals: dict[str, Any], finalized: list[dict[str, Any]],
                      submitted: list[dict[str, Any]], routed: list[dict[str, Any]], qc_items: dict[str, Any],
                      tally: dict[str, tuple[int, int]], holdout: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """What must hold of golden items (`golden`: item -> answer, as the gateway stored them)."""
    answers = {r["event_id"]: r for r in submitted if r["project"] == PROJECT and r.get("golden")}
    per_pair: Counter[tuple[str, str]] = Counter((r["annotator_id"], r["item_id"]) for r in answers.values())
    expected: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in answers.values():
        expected[r["annotator_id"]][0] += 1
        expected[r["annotator_id"]][1] += r["label"] == golden.get(r["item_id"])
    counted_wrong = sorted(f"{a}: qc {tally.get(a, (0, 0))[0]}/{tally.get(a, (0, 0))[1]}, topic {n}/{c}"
                           for a, (n, c) in expected.items() if tuple(tally.get(a, (0, 0))) != (n, c))
    counted_wrong += sorted(f"{a}: qc {n}/{c}, topic 0/0" for a, (n, c) in tally.items()
                            if a not in expected and (n or c))
    return {
        "golden_items": len(golden),
        "golden_answers": len(answers),
        "golden_answers_wrong": sum(r["label"] != golden.get(r["item_id"]) for r in answers.values()),
        "golden_answers_per_annotator": {a: n for a, (n, _) in sorted(expected.items())},
        "golden_final_not_its_answer": sorted(i for i, g in golden.items() if finals.get(i, {}).get("label") != g)[:20],
        "golden_finals_changed": sorted(
            f"{r['item_id']} v{r['version']} {r['label']}" for r in finalized if r["project"] == PROJECT
            and r["item_id"] in golden and (r["version"] != 1 or r["label"] != golden[r["item_id"]]
                                            or not r.get("golden") or r.get("provenance") != "imported"))[:20],
        "golden_answers_as_votes": sorted(i for i in golden if qc_items.get(i, {}).get("votes"))[:20],
        "golden_answers_for_other_items": sorted({r["item_id"] for r in answers.values()
                                                  if r["item_id"] not in golden})[:20],
        "golden_items_served_as_work": sorted(
            {r["item_id"] for r in submitted
             if r["project"] == PROJECT and r["item_id"] in golden and not r.get("golden")}
            | {r["item_id"] for r in routed if r["item_id"] in golden
               and (not r.get("golden") or r.get("required_annotators"))})[:20],
        "golden_items_shown_as_neighbours": sorted(
            {n["item_id"] for r in routed for n in r.get("neighbours", ()) if n["item_id"] in golden})[:20],
        "golden_items_answered_twice_by_one_annotator": sorted(f"{i} {a}" for (a, i), n in per_pair.items()
                                                               if n > 1)[:20],
        "golden_counted_wrong": counted_wrong[:20],
        "golden_items_trained_on": sorted(i for i in golden if holdout.get(i) != (True, True))[:20],
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
    for name in ("open_tasks_for_final_items", "submissions_missing_on_topic", "submissions_missing_in_qc",
                 "acknowledged_items_not_stored", "stored_items_without_final", "items_published_not_stored",
                 "stored_submissions_missing_on_topic", "stored_submissions_missing_in_qc",
                 "submissions_published_not_stored", "outbox_records_left", *GOLDEN_CHECKS):
        if invariants[name]:
            problems.append(f"{name}: {invariants[name]}")
    if any(invariants["consumer_lag"].values()):
        problems.append(f"consumer lag: {invariants['consumer_lag']}")
    if not invariants["golden_answers"]:
        problems.append("no golden answer came in: the run did not exercise golden items")
    return problems


GOLDEN_CHECKS = ("golden_final_not_its_answer", "golden_finals_changed", "golden_answers_as_votes",
                 "golden_answers_for_other_items", "golden_items_served_as_work", "golden_items_shown_as_neighbours",
                 "golden_items_answered_twice_by_one_annotator", "golden_counted_wrong", "golden_items_trained_on")


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
             # The gateway's own golden rates (5%, 2% after 400 tasks): golden tasks as a deployment mixes them.
             "LABELMESH_TRAINER_FIRST_MODEL_MIN": "100",
             "LABELMESH_TRAINER_RETRAIN_EVERY": "300", "LABELMESH_GATEWAY_LEASE_SECONDS": "60",
             "LABELMESH_MONGO_SOCKET_TIMEOUT_S": "20",
             # A killed consumer's partitions wait this long for it before the restarted one gets them.
             "LABELMESH_SESSION_TIMEOUT_MS": "15000"},
        log_dir=var_dir / "services", port_offset=300, grpc_port=50351,
        replicas={s: 1 if s == "trainer" else replicas for s in SERVICES},
    )
    rows = [r for r in load("train") if r.label in LABELS]
    random.Random(seed).shuffle(rows)
    streamed = 150 + OUTAGE_BURST + 30 + GOLDEN_AT_START  # bootstrap, spare rows, golden items at start
    bootstrap_rows, spare = rows[:150], rows[150:streamed - GOLDEN_AT_START]
    golden_rows = rows[streamed - GOLDEN_AT_START:streamed]
    stream = rows[streamed:streamed + max_items]
    truth = {r.item_id: r.label for r in rows}
    state = Load()
    stop, stop_watch = asyncio.Event(), asyncio.Event()
    # Every port a gateway replica may take during the run (rolling restarts start replacements on fresh ones):
    # gRPC's round-robin spreads calls over those that answer, as a headless Service would on Kubernetes.
    client = GatewayClient.balanced([stack.grpc_port + n for n in range(MAX_GATEWAYS)], ADMIN)
    mongo: AsyncMongoClient | None = None
    started = time.monotonic()
    stop_supervisor = asyncio.Event()
    supervisor: asyncio.Task[None] | None = None
    try:
        await stack.start_all()
        # The channel was made before the gateways listened: its backends may sit in connection backoff, and a
        # first call then fails at once ("connections to all backends failing", CI at 2 replicas). Wait for one.
        await asyncio.wait_for(client.channel.channel_ready(), timeout=120)
        await client.configure_project(PROJECT, LABELS, guidelines="Pick the customer's intent.")
        tokens = {f"ann-{i}": await client.create_annotator(f"ann-{i}") for i in range(4)}
        for n in range(2):
            tokens[f"expert-{n}"] = await client.create_annotator(f"expert-{n}", role="expert")
        faulty = Run(stack, infra, state, client, truth, spare)
        await client.ingest_items([pb.IngestItem(project=PROJECT, item_id=r.item_id, text=r.text, trusted_label=r.label)
                                   for r in bootstrap_rows])
        mongo = AsyncMongoClient(infra.mongo_uri)

        async def model_ready() -> bool:
            return await mongo[settings.database_name("prelabeler")]["models"].count_documents({}) > 0

        await _wait(model_ready, 300, "model v1")
        golden_items = [ingest_item(r, golden=True) for r in golden_rows]
        acknowledged(state, golden_items, await _call(state, "ingest", lambda: client.ingest_items(golden_items)))
        supervisor = asyncio.create_task(_supervise(faulty, stop_supervisor, started))
        watcher = asyncio.create_task(_watch_finals(infra.bootstrap, prefix, stop_watch, state))
        workers = [asyncio.create_task(_annotate(client.as_user(t), n, truth, stop, state, retry=n != NO_RETRY))
                   for n, t in tokens.items()]
        faults_over = asyncio.Event()
        ingest = asyncio.create_task(_ingest(client, stream, rate, state, faults_over))
        await asyncio.sleep(5)
        done: list[Fault] = []
        for action in faults:
            done.append(await _fault(action, faulty))
            await asyncio.sleep(3)
        faults_over.set()
        await ingest
        load_s = time.monotonic() - started

        async def all_final() -> bool:
            """Every item the gateway kept has a final label (those of calls given up included), and nothing is
            left in its outbox (the relay publishes what a killed gateway kept, relay_after_s later)."""
            gateway = mongo[settings.database_name("gateway")]
            if await gateway["outbox"].count_documents({}):
                return False
            kept = await gateway["items"].count_documents({"project": PROJECT, "trusted_label": None})
            n = await mongo[settings.database_name("qc")]["items"].count_documents(
                {"project": PROJECT, "final": {"$exists": True}, "trusted_label": None})
            return n >= max(kept, len(state.ingested))

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
        stop_supervisor.set()
        await supervisor
        exit_codes = stack.stop_all()
    finally:
        stop_supervisor.set()
        if supervisor is not None and not supervisor.done():
            await supervisor
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
        "client_retries": dict(state.retries), "requests_given_up": state.abandoned,
        "supervisor_restarts": state.restarts, "invariants": invariants, "broken": broken(invariants),
        "service_exit_codes": exit_codes,
    }


FAULTS = [*(f"SIGKILL {name}" for name in SERVICES), "restart Kafka", "restart FerretDB",
          # The gateway killed this long after a client that never retries sent its call: before the gateway read
          # it, while it writes the outbox, finishes the lease, stores, publishes; the outage follows while the
          # relay still has what these calls left.
          *(f"SIGKILL gateway mid-submit {ms}ms" for ms in (5, 15, 30, 60, 120)),
          *(f"SIGKILL gateway mid-ingest {ms}ms" for ms in (10, 60)),
          f"FerretDB outage {FERRETDB_OUTAGE_S:.0f}s"]
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
    parser.add_argument("--tag", default="", help="results go to crash_recovery-<tag>.json (replicas-<tag>.json)")
    args = parser.parse_args()
    faults = FAULTS if args.replicas == 1 else REPLICA_FAULTS
    result = asyncio.run(run(args.var, args.max_items, args.rate, faults, replicas=args.replicas))
    payload = {"environment": environment(), "replicas": args.replicas, **result}
    name = "crash_recovery" if args.replicas == 1 else "replicas"
    path = write_result(f"{name}-{args.tag}" if args.tag else name, payload)
    print(json.dumps(payload, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
