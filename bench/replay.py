"""How fast `labelmesh replay` rebuilds each service from its topics, and whether its state comes back equal.

    python bench/replay.py [--items 30000] [--qc-items 3000] [--services prelabeler,router,qc,trainer] [--shared]

For each service, in a fresh namespace of its own: publish a recorded stream of `--items` items on the service's
input topics, run the service (in this process) until every one of its consumer groups has lag 0 (first build),
stop it, run the replay command (drop + rewind), start it again until its lag is 0 (rebuild), and compare the
canonical digests of its database (state_digest; where they differ, diff_documents says which fields). It starts
a Kafka and a FerretDB of its own (deploy/local's scripts, ports 29092/29093 and 37217, a temporary data
directory, stopped at the end), so that their CPU time is the service's alone; `--shared` uses the running ones.
The streams:

- prelabeler: item.ingested with a short text each, embedded by the hashing stub encoder (`hashing`, 384-d; no
  model, so every pre-label is model-less and keeps its embedding for a cold start). MiniLM is not measured
  here: at ~250 texts/s on 2 cores the model alone is 8x under the goal (bench/results/stack_floor.json).
- router: item.prelabeled (384-d embedding, top-2), as before, so its numbers compare with the earlier runs.
- qc: per item item.ingested, item.prelabeled, item.routed and, for the 30% routed to one reviewer, its
  label.submitted (qc also reads back its own qc.flagged and qc.evidence); `confirm_single=False`, as in
  tests/integration/test_replay.py, since the stream has no expert to answer a second opinion. 3,000 items, not
  30,000: at its rate 30,000 would take the bench past an hour.
- trainer: per item item.ingested (its text copy), item.prelabeled and label.finalized; retraining is off
  (`first_model_min` above the item count): a model's training point depends on when the training loop looked,
  not on the stream, so a rebuilt registry is not expected to be equal (README, "rebuilding a service").

Rates are items of the stream per second of wall time from the service's start to lag 0 (the group join is
inside it). CPU seconds are counted over the same stretch for this process (the service, plus the lag polls),
Kafka and FerretDB, with the hypervisor's steal, and the bus's own time per phase (inbox claims, handler,
publishing) and the database commands by collection from the service's metrics. The ceiling is what that CPU per
item allows on the machine's CPUs with nobody else on them (pipeline_stats.rebuild_ceiling).

Results (bench/results/replay.json, 2026-12-08 00:53-01:03, one run, 595 s in all, load average 8.6-10 on the 2
cores from other work on the machine; CPU-ms per item of the rebuild):

| service | items | rebuild items/s | state equal | service | Kafka | FerretDB | CPU ceiling (set by) |
|---|---|---|---|---|---|---|---|
| prelabeler | 30,000 | 1,483 | yes | 0.21 | 0.07 | 0.10 | 4,739 (service loop) |
| router | 30,000 | 1,176 | yes | 0.25 | 0.06 | 0.16 | 4,065 (service loop) |
| qc | 3,000 | 44 | no | 8.39 | 1.04 | 7.45 | 119 (all processes) |
| trainer | 30,000 | 534 | yes | 0.31 | 0.08 | 0.89 | 1,567 (all processes) |

- No service rebuilt at 2,000 items/s here. The prelabeler and the router have the CPU for it (0.38 and 0.47
  CPU-ms per item: 2x the goal); their runs used 0.56 CPUs of the 2 (rate x CPU per item), the share the
  machine's other work left them, so their wall rate says more about the load than about the services.
- The trainer spends 0.89 CPU-ms per item in FerretDB: each example gets its embedding and its label from two
  topics, so the second of its two events is an update statement (30,000 in 1,890 commands, 24 s of the rebuild's
  database time), and FerretDB 1.24 answers each by reading and rewriting the document (with its 1.5 KB
  embedding). Its ceiling, 1,567 items/s, is under the goal before any load.
- qc is 17x slower than the goal's CPU budget: each label is handled as if alone (services/qc/items.py), ~6
  round trips (item, annotators, reliability, labels, votes, suspensions), with 2,318 update commands on
  `items` for 3,000 items; its own Python (the passes included) costs as much as FerretDB. Its rebuilt state
  differs: the tally group reads qc.evidence, which the first build already wrote in full, so it runs the
  agreement, drift and label-error passes (services/qc/passes.py reads `labels` and `items`) while the items
  group is still rebuilding those collections: the agreement of 900 labels counted 0, no drift flags, no
  label-error pass. The README's caveat on replays that interleave consumer groups differently, measured.

qc rerun alone (bench/results/replay-qc.json, 2026-12-08 04:27, 3,000 items, load average 7-9; before the
changes below, replay-qc-baseline.json, 03:42, load 8-10): rebuild 37 items/s (27 before; the wall rate is the
load's), CPU-ms per item service 12.3 (19.1), Kafka 1.8 (1.5), FerretDB 5.6 (9.2); 0.102 round trips and 3.1
documents written per event (0.84 and 4.06). A run's votes are handled together and each item gets one update per
run (services/qc/items.py, store.ItemWrites). What is left of qc's own CPU is mostly the five label-error passes
(each fits five logistic regressions over every final label): without them it was ~1.3 CPU-ms per item. The
state: everything equal but the label-error history (five passes each side, over different numbers of stored
items) and the inbox entries of the flags only the rebuilt passes published: a pass reads what the items group
has stored when it comes due (README, "rebuilding a service").
Before, the bench read the end offsets before the groups' committed offsets and could stop qc in the middle of
a pass (labelmesh.replay.group_lags), and a final label counted towards the pass before its embedding was there.
10,000 items without label-error passes (replay-qc-10k.json, --qc-label-error-every 0, load 7-10): 93 items/s,
state equal, CPU-ms per item service 4.1, Kafka 0.6, FerretDB 3.4 (7.1 before the drift pass read only the
labelled items' pre-labels); the agreement and drift passes, each over all of a project's labels, set the
ceiling (242 items/s).

The floor beside these (bench/results/stack_floor.json, 2026-12-03, 3,000 items, medians): the pipeline's
shape with every service reduced to "decode, write one document, publish", inside the inbox, ran 891 items/s
ingest -> routed through five services at 2.06 CPU-ms per item: per service 0.17-0.31 CPU-ms of Python, with
Kafka 0.30 and FerretDB 0.58 CPU-ms per item for all five. One service alone on 2 CPUs at that floor's
per-service share (~0.22 + 0.06 Kafka + 0.12 FerretDB = ~0.4 CPU-ms) could pass 2,000 items/s only while
it spends under 1.0 CPU-ms per item in all (2 CPUs / 2,000 items/s): the prelabeler (0.38) and the router (0.47)
are at that floor, the trainer (1.28) and qc (17) above it.
Writes bench/results/replay.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _common import REPO, cpu_seconds, environment, infra_pids, steal_seconds, write_result
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from pipeline_stats import rebuild_ceiling
from pymongo import monitoring

from labelmesh.events import topic_partitions
from labelmesh.infra import create_topics
from labelmesh.ml.encoder import load_encoder
from labelmesh.replay import group_lags, replay_service
from labelmesh.runtime.service import ServiceRuntime
from labelmesh.runtime.settings import CommonSettings
from labelmesh.state_digest import diff_documents, digest_documents, read_collections
from schemas.events import (
    Envelope,
    ItemIngested,
    ItemPrelabeled,
    ItemRouted,
    LabelFinalized,
    LabelScore,
    LabelSubmitted,
    ProjectConfigured,
    Provenance,
    TextPayload,
    Thresholds,
    Tier,
)
from services.prelabeler.app import create_app as create_prelabeler
from services.prelabeler.settings import PrelabelerSettings
from services.qc.app import create_app as create_qc
from services.qc.settings import QcSettings
from services.router.app import create_app as create_router
from services.router.settings import RouterSettings
from services.trainer.app import create_app as create_trainer
from services.trainer.settings import TrainerSettings

LABELS = tuple(f"label{i}" for i in range(20))
PROJECT = "bench"
# qc rebuilt 1,000 items at 41 items/s (CPU-bound, 15 CPU-ms of FerretDB per item: README says why): its stream is
# shorter, so that the whole bench stays within ~15 minutes.
QC_ITEMS = 3000
POOL = 1000  # distinct embeddings, reused across items: building 30,000 random vectors is not what is measured
SERVICES = ("prelabeler", "router", "qc", "trainer")
MAIN_CACHE = Path("/work/main/.cache")  # where the other checkouts' deploy/local scripts built their binaries


class Vectors:
    def __init__(self, dim: int) -> None:
        rng = np.random.default_rng(0)
        pool = rng.normal(size=(POOL, dim))
        pool /= np.linalg.norm(pool, axis=1, keepdims=True)
        self.pool = [tuple(np.round(v, 6).tolist()) for v in pool]

    def __getitem__(self, i: int) -> tuple[float, ...]:
        return self.pool[i % POOL]


def _top_k(i: int, p: float) -> tuple[LabelScore, ...]:
    return (LabelScore(label=LABELS[i % 20], probability=p),
            LabelScore(label=LABELS[(i + 1) % 20], probability=round((1 - p) / 2, 6)))


def _ingested(i: int) -> ItemIngested:
    return ItemIngested(producer="bench", project=PROJECT, item_id=f"i{i}",
                        payload=TextPayload(text=f"how do I move item {i} of batch {i % 97} to card {i % 13}"))


def _prelabeled(i: int, vectors: Vectors, p: float) -> ItemPrelabeled:
    return ItemPrelabeled(producer="bench", project=PROJECT, item_id=f"i{i}", model_version=1,
                          encoder=f"bench-{len(vectors[0])}", embedding=vectors[i], top_k=_top_k(i, p))


def prelabeler_stream(items: int, vectors: Vectors, rng: np.random.Generator) -> Iterator[Envelope]:
    for i in range(items):
        yield _ingested(i)


def router_stream(items: int, vectors: Vectors, rng: np.random.Generator) -> Iterator[Envelope]:
    for i in range(items):
        yield _prelabeled(i, vectors, float(rng.uniform(0.2, 1.0)))


def qc_stream(items: int, vectors: Vectors, rng: np.random.Generator) -> Iterator[Envelope]:
    for i in range(items):
        single = i % 10 < 3
        p = float(rng.uniform(0.7, 0.95) if single else rng.uniform(0.96, 1.0))
        yield _ingested(i)
        yield _prelabeled(i, vectors, p)
        yield ItemRouted(producer="bench", project=PROJECT, item_id=f"i{i}", tier=Tier.SINGLE if single else Tier.AUTO,
                         required_annotators=1 if single else 0, model_version=1, top_k=_top_k(i, p),
                         thresholds=Thresholds(auto_accept=0.95, single_review=0.7))
        if single:
            # Mostly the pre-label, one in five against it; five annotators.
            label = LABELS[i % 20] if i % 5 else LABELS[(i + 1) % 20]
            yield LabelSubmitted(producer="bench", project=PROJECT, item_id=f"i{i}", task_id=f"t{i}",
                                 annotator_id=f"ann{i % 5}", label=label, time_spent_ms=1000, guideline_version=1,
                                 idempotency_key=f"i{i}-ann{i % 5}")


def trainer_stream(items: int, vectors: Vectors, rng: np.random.Generator) -> Iterator[Envelope]:
    for i in range(items):
        p = float(rng.uniform(0.5, 1.0))
        auto = i % 10 >= 3
        yield _ingested(i)
        yield _prelabeled(i, vectors, p)
        yield LabelFinalized(producer="bench", project=PROJECT, item_id=f"i{i}", label=LABELS[i % 20], version=1,
                             provenance=Provenance.AUTO if auto else Provenance.SINGLE_REVIEW, confidence=p,
                             human_labels=0 if auto else 1, expert_labels=0, model_version=1, guideline_version=1,
                             prelabel=LabelScore(label=LABELS[i % 20], probability=p), verified=not auto)


@dataclass(frozen=True)
class Case:
    service: str
    settings: Callable[[str], CommonSettings]  # namespace -> settings
    app: Callable[[Any], ServiceRuntime]
    stream: Callable[[int, Vectors, np.random.Generator], Iterator[Envelope]]
    groups: dict[str, Sequence[str]]  # consumer group suffix ("" = the service's own) -> short topic names
    # After lag 0, until the state stops changing on its own (work the service does beside its consumers).
    settle: Callable[[ServiceRuntime], Awaitable[None]] | None = None


async def trainer_counted(rt: ServiceRuntime) -> None:
    """The training loop counts a project's usable examples into `train_state` on its own schedule, spaced to 5% of
    the time (labelmesh.runtime.pacing: up to minutes after the last batch at 30,000 examples): the check it would
    make then is made now (retraining is off, so it only counts)."""
    await rt.component.maybe_train(PROJECT)


def _ns(cls: type[CommonSettings], **kw: Any) -> Callable[[str], CommonSettings]:
    return lambda ns: cls(namespace=ns, topic_prefix=f"{ns}.", http_port=0, **kw)


def cases(items: int, qc_label_error_every: int | None = None) -> dict[str, Case]:
    stub = load_encoder("hashing")
    return {c.service: c for c in (
        Case("prelabeler", _ns(PrelabelerSettings, encoder="hashing"), lambda s: create_prelabeler(s, stub),
             prelabeler_stream, {"": ["item.ingested"], ".projects": ["project.configured"],
                                 ".models": ["model.updated"], ".finals": ["label.finalized"]}),
        Case("router", _ns(RouterSettings), create_router, router_stream,
             {"": ["item.prelabeled", "label.finalized", "qc.flagged"], ".projects": ["project.configured"],
              ".thresholds": ["threshold.evidence", "model.updated"]}),
        Case("qc", _ns(QcSettings, confirm_single=False, **({} if qc_label_error_every is None else
                                                             {"label_error_every": qc_label_error_every})),
             create_qc, qc_stream,
             {"": ["item.ingested", "item.prelabeled", "item.routed", "label.submitted", "qc.flagged"],
              ".tally": ["qc.evidence"], ".projects": ["project.configured"]}),
        Case("trainer", _ns(TrainerSettings, first_model_min=items + 1), create_trainer, trainer_stream,
             {"": ["item.prelabeled", "label.finalized"], ".items": ["item.ingested"],
              ".projects": ["project.configured"]}, trainer_counted),
    )}


async def publish(settings: CommonSettings, events: Iterator[Envelope]) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=20, max_batch_size=1 << 20,
                                max_request_size=16 * 1024 * 1024)
    await producer.start()
    try:
        config = ProjectConfigured(producer="bench", project=PROJECT, labels=LABELS, guideline_version=1)
        await producer.send_and_wait(settings.topic(config.TOPIC), config.model_dump_json().encode(),
                                     key=PROJECT.encode())
        pending, sent = [], 0
        for event in events:
            pending.append(await producer.send(settings.topic(event.TOPIC), event.model_dump_json().encode(),
                                               key=event.key.encode()))
            sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        return sent
    finally:
        await producer.stop()


class LagWatch:
    """Lag per consumer group of one service, with one admin client and one consumer for the whole run (the
    replay module's consumer_lag opens both at every call, which would add its own CPU to what is measured)."""

    def __init__(self, settings: CommonSettings, service: str, groups: dict[str, Sequence[str]]) -> None:
        self.settings = settings
        self.groups = {settings.consumer_group(service) + suffix: [settings.topic(t) for t in topics]
                       for suffix, topics in groups.items()}

    async def __aenter__(self) -> LagWatch:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap, client_id="bench-lag")
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, group_id=None)
        await self.admin.start()
        await self.consumer.start()
        self.partitions = {g: await topic_partitions(self.settings.kafka_bootstrap, t) for g, t in self.groups.items()}
        every = sorted({tp for tps in self.partitions.values() for tp in tps})
        self.starts = await self.consumer.beginning_offsets(every)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def lag(self) -> dict[str, int]:
        return await group_lags(self.admin, self.consumer, self.partitions, self.starts)

    async def until_caught_up(self, started: float) -> float:
        while any((await self.lag()).values()):
            await asyncio.sleep(0.2)
        return time.perf_counter() - started


LOCAL = REPO / "deploy" / "local"


@dataclass
class PrivateInfra:
    """A Kafka and a FerretDB of the bench's own (deploy/local's scripts, own ports and data directory), so that
    their CPU time is this bench's alone: the shared ones also serve whoever else is testing on the machine."""

    var_dir: Path
    kafka_port: int = 29092
    controller_port: int = 29093
    mongo_port: int = 37217

    def env(self) -> dict[str, str]:
        cache = os.environ.get("LABELMESH_CACHE") or str(REPO / ".cache" if (REPO / ".cache" / "bin").exists()
                                                          else MAIN_CACHE)
        return {**os.environ, "LABELMESH_VAR": str(self.var_dir), "LABELMESH_CACHE": cache,
                "KAFKA_PORT": str(self.kafka_port), "KAFKA_CONTROLLER_PORT": str(self.controller_port),
                "MONGO_PORT": str(self.mongo_port)}

    def script(self, name: str, command: str) -> None:
        subprocess.run(["bash", str(LOCAL / name), command], env=self.env(), check=True, stdout=subprocess.DEVNULL)

    def up(self) -> None:
        self.script("kafka.sh", "start")
        self.script("ferretdb.sh", "start")
        os.environ["LABELMESH_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{self.kafka_port}"
        os.environ["LABELMESH_MONGO_URI"] = f"mongodb://127.0.0.1:{self.mongo_port}/"

    def down(self) -> None:
        """Stop both and delete their data (a 30,000-item run leaves ~1 GB of topics and SQLite files)."""
        for name in ("ferretdb.sh", "kafka.sh"):
            self.script(name, "stop")
        shutil.rmtree(self.var_dir, ignore_errors=True)

    def pids(self) -> dict[str, int]:
        run = self.var_dir / "run"
        return {name: int((run / f"{name}.pid").read_text().split()[0]) for name in ("kafka", "ferretdb")}


class Meter:
    """CPU seconds of this process, Kafka and FerretDB, and the machine's steal, over one stretch."""

    def __init__(self, pids: dict[str, int] | None = None) -> None:
        self.pids = pids or infra_pids()

    def read(self) -> dict[str, float]:
        return {"service_process": time.process_time(), "steal": steal_seconds(),
                **{name: cpu_seconds(pid) for name, pid in self.pids.items()}}

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {k: round(after[k] - before[k], 2) for k in before}


class WriteCounter(monitoring.CommandListener):
    """Documents written by the process, by command and collection: an insert's documents, an update's or a
    delete's statements (a command's count says round trips; this says how many documents each carried)."""

    STATEMENTS = {"insert": "documents", "update": "updates", "delete": "deletes"}

    def __init__(self) -> None:
        self.written: dict[str, int] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        field = self.STATEMENTS.get(event.command_name)
        if field is not None:
            key = f"{event.command_name} {event.command.get(event.command_name)}"
            self.written[key] = self.written.get(key, 0) + len(event.command.get(field, ()))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...

    def failed(self, event: monitoring.CommandFailedEvent) -> None: ...

    def since(self, before: dict[str, int]) -> dict[str, int]:
        spent = {k: n - before.get(k, 0) for k, n in self.written.items()}
        return dict(sorted(((k, n) for k, n in spent.items() if n), key=lambda kv: -kv[1]))


WRITES = WriteCounter()
monitoring.register(WRITES)  # before any client is made: listeners registered later do not see its commands


def bus_phases(rt: ServiceRuntime) -> dict[str, dict[str, float]]:
    """Seconds and batches per bus phase (labelmesh_batch_phase_seconds), and database commands by collection."""
    phases: dict[str, dict[str, float]] = {}
    commands: dict[str, float] = {}
    command_s: dict[str, float] = {}
    for metric in rt.registry.collect():
        for sample in metric.samples:
            if sample.name == "labelmesh_batch_phase_seconds_sum":
                phases.setdefault(sample.labels["phase"], {})["seconds"] = round(sample.value, 2)
            elif sample.name == "labelmesh_batch_phase_seconds_count":
                phases.setdefault(sample.labels["phase"], {})["batches"] = sample.value
            elif sample.name == "labelmesh_mongo_command_seconds_count":
                key = f"{sample.labels['command']} {sample.labels['collection']}"
                commands[key] = commands.get(key, 0) + sample.value
            elif sample.name == "labelmesh_mongo_command_seconds_sum":
                key = f"{sample.labels['command']} {sample.labels['collection']}"
                command_s[key] = command_s.get(key, 0) + sample.value
    return {"phases": phases, "mongo_commands": {k: {"count": n, "seconds": round(command_s.get(k, 0.0), 2)}
                                                 for k, n in sorted(commands.items(), key=lambda kv: -kv[1])}}


async def build(case: Case, settings: CommonSettings, watch: LagWatch,
                meter: Meter) -> tuple[float, dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Run the service from wherever its groups stand until lag 0; its time, documents, CPU and bus phases."""
    runtime = case.app(settings)
    before = meter.read()
    written = dict(WRITES.written)
    started = time.perf_counter()
    await runtime.start()
    seconds = await watch.until_caught_up(started)
    cpu = Meter.spent(before, meter.read())
    phases = bus_phases(runtime)
    phases["documents_written"] = WRITES.since(written)
    settled = time.perf_counter()
    if case.settle is not None:
        await case.settle(runtime)
    phases["settle_s"] = round(time.perf_counter() - settled, 2)
    docs = await read_collections(runtime.db)
    await runtime.stop()
    return seconds, docs, {"cpu_s": cpu, **phases}


def per_item_ms(cpu: dict[str, float], items: int) -> dict[str, float]:
    return {k: round(1000 * v / items, 3) for k, v in cpu.items()}


def per_event(stretch: dict[str, Any], events: int) -> dict[str, float]:
    """Database round trips (commands) and documents written per event of the stream, over one build."""
    commands = sum(c["count"] for c in stretch["mongo_commands"].values())
    return {"round_trips": round(commands / events, 3),
            "documents_written": round(sum(stretch["documents_written"].values()) / events, 3)}


def ceiling(cpu_ms: dict[str, float]) -> dict[str, Any]:
    """What the measured CPU per item allows on this machine's CPUs with nobody else on them."""
    rate, limit = rebuild_ceiling(len(os.sched_getaffinity(0)), {k: v for k, v in cpu_ms.items() if k != "steal"})
    return {"items_per_s": round(rate), "set_by": limit}


async def run_case(case: Case, items: int, dim: int, meter: Meter) -> dict[str, Any]:
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    settings = case.settings(namespace)
    await create_topics(settings.kafka_bootstrap, settings.topic_prefix)
    started = time.perf_counter()
    events = await publish(settings, case.stream(items, Vectors(dim), np.random.default_rng(0)))
    print(f"{case.service}: published {events} events ({items} items) to {namespace} "
          f"in {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)
    async with LagWatch(settings, case.service, case.groups) as watch:
        first_s, original, first = await build(case, settings, watch, meter)
        print(f"{case.service}: first build {first_s:.1f}s", file=sys.stderr, flush=True)
        started = time.perf_counter()
        report = await replay_service(settings, case.service)
        replay_s = time.perf_counter() - started
        rebuild_s, rebuilt, rebuild = await build(case, settings, watch, meter)
    before, after = digest_documents(original), digest_documents(rebuilt)
    print(f"{case.service}: rebuild {rebuild_s:.1f}s ({items / rebuild_s:.0f} items/s), "
          f"state equal: {before == after}", file=sys.stderr, flush=True)
    return {
        "service": case.service, "items": items, "events": events, "namespace": namespace,
        "first_build_s": round(first_s, 2), "first_build_items_per_s": round(items / first_s, 1),
        "replay_command_s": round(replay_s, 2), "collections_dropped": report.dropped,
        "rebuild_s": round(rebuild_s, 2), "rebuild_items_per_s": round(items / rebuild_s, 1),
        "rebuild_events_per_s": round(events / rebuild_s, 1),
        "state_equal_after_rebuild": before == after,
        "differences": diff_documents(original, rebuilt) if before != after else {},
        "rebuild_cpu_ms_per_item": per_item_ms(rebuild["cpu_s"], items),
        "rebuild_per_event": per_event(rebuild, events),
        "rebuild_cpu_ceiling": ceiling(per_item_ms(rebuild["cpu_s"], items)),
        "first_build": first, "rebuild": rebuild, "digest": before,
    }


async def run(services: list[str], items: int, qc_items: int, dim: int, pids: dict[str, int] | None,
              qc_label_error_every: int | None = None) -> dict[str, Any]:
    known = cases(items, qc_label_error_every)
    meter = Meter(pids)
    results = {name: await run_case(known[name], qc_items if name == "qc" else items, dim, meter) for name in services}
    return {
        "bench": "replay", "items": items, "qc_items": qc_items, "embedding_dim": dim,
        "qc_label_error_every": QcSettings.model_fields["label_error_every"].default
        if qc_label_error_every is None else qc_label_error_every,
        "encoder_for_prelabeler": "hashing (stub, 384-d)",
        "goal_items_per_s": 2000,
        "summary": {name: {"rebuild_items_per_s": r["rebuild_items_per_s"],
                           "state_equal_after_rebuild": r["state_equal_after_rebuild"],
                           "rebuild_cpu_ms_per_item": r["rebuild_cpu_ms_per_item"],
                           "rebuild_per_event": r["rebuild_per_event"],
                           "rebuild_cpu_ceiling": r["rebuild_cpu_ceiling"]} for name, r in results.items()},
        "services": results,
        "infrastructure": "private (this bench's own Kafka and FerretDB)" if pids else "shared",
        "environment": environment(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=30_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--services", default=",".join(SERVICES))
    parser.add_argument("--qc-items", type=int, default=QC_ITEMS,
                        help="items of qc's stream (at its rate, 30,000 would take the bench past an hour)")
    parser.add_argument("--qc-label-error-every", type=int, default=None,
                        help="qc's label_error_every (0: no label-error pass; each refits the project's every final "
                             "label, so at 30,000 items the passes outweigh the rest of the rebuild)")
    parser.add_argument("--output", default="replay")
    parser.add_argument("--shared", action="store_true",
                        help="use the running Kafka and FerretDB (their CPU then includes everyone else's work)")
    args = parser.parse_args()
    services = [s for s in args.services.split(",") if s]
    unknown = sorted(set(services) - set(SERVICES))
    if unknown:
        parser.error(f"unknown service(s) {', '.join(unknown)}; one of {', '.join(SERVICES)}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    infra = None if args.shared else PrivateInfra(Path(tempfile.mkdtemp(prefix="replay-bench-")))
    if infra is not None:
        infra.up()
    try:
        result = asyncio.run(run(services, args.items, args.qc_items, args.dim, infra.pids() if infra else None,
                                 args.qc_label_error_every))
    finally:
        if infra is not None:
            infra.down()
    path = write_result(args.output, result)
    print(path.read_text())


if __name__ == "__main__":
    main()
