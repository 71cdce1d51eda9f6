"""Pipeline throughput: items/s and p50/p99 latency through the five running services, against two ceilings.

Needs Kafka and FerretDB up (`bash deploy/local/up.sh`). In ONE run, on a fresh namespace and topic prefix:

1. raw aiokafka produce-and-consume on the same broker (messages the size of an item.ingested event);
2. per encoder (the hashing stub, then MiniLM), the five services as separate processes (labelmesh.stack):
   - bootstrap model v1 from BANKING77 rows through the front door (as `labelmesh bootstrap` does);
   - loop phase: a trickle of items with simulated annotator bots that lease and submit at once over gRPC,
     so ingest -> final label per tier shows the pipeline's own overhead, not a queue of human work;
   - burst phase: N items ingested over gRPC as fast as possible -> items/s and p50/p99 latency
     ingest -> item.prelabeled and ingest -> item.routed, from the Kafka record timestamps of each item;
   - prelabeler alone: the other four services paused (SIGSTOP), the same texts as new items produced
     straight to item.ingested -> the prelabeler service's own items/s and latency (issue #3);
   - model-only: the same encoder + the head the trainer published, on the same texts, timed two ways in
     this process: one call of the prelabeler's batch size at a time on every CPU's thread, and the
     prelabeler's own plan (chunks embedded concurrently, one torch thread each on CPU); the faster is the
     ceiling for the prelabeler stage, so a service that found a better way to run the model is not
     measured against a slower one.

Results (bench/results/pipeline_throughput.json, 2026-12-03 13:34, one run, 2 shared cores, 0.1-0.3 CPU-s of
steal in the measured phases):
- stub: ingest -> prelabeled 598 items/s, ingest -> routed 382 (p50 4.6 s, p99 6.9 s); the prelabeler alone
  1,435; raw aiokafka 10,879 messages/s produce+consume. FerretDB used 7.2 of the burst's 15.3 CPU-s.
- MiniLM: prelabeler alone 245 items/s = 88% of model-only's 278 (longest-first pieces; one call at a time 245),
  its two embedding workers busy 92% of the time; inside the full pipeline 109 = 39%.
Earlier that day, on a slower, noisier machine (raw aiokafka 12,036 messages/s in the full run of 12:13, model-only
MiniLM 121-314 texts/s within minutes; steal_seconds now records the hypervisor's share):
- stub, 12:13: ingest -> prelabeled 575 items/s, ingest -> routed 324 (p50 5.9 s, p99 8.4 s); the prelabeler alone
  1,314. Alternating runs that hour, two each: routed 461 and 442 against 439 and 397 for the code of 09:09,
  prelabeler alone 1,710 and 1,771 against 1,844 and 1,744: the same within the noise.
- MiniLM, 12:13: prelabeler alone 206 items/s = 86% of model-only's 239 (longest-first pieces; one call at a
  time 204); inside the full pipeline 98 = 42%. Every run of longest-first pieces that day, alone / model-only:
  pieces of 32: 200/215, 222/205, 198/297, 185/252; of 128 (the default since): 206/239, 194/204 (model-only
  lost 8.7 s to steal), 225/298. So 67-108%, not a steady 85%. Alternating with the code of 09:09 (static
  pairs of 256-text chunks), pieces of 32, three runs each: alone 200, 222, 198 against 178, 160, 189 items/s,
  +12% by the medians.
- The prelabeler's workers were busy 89% and 87% of the alone phase (encode_utilisation, two runs, 13:05);
  with the tail of each batch cut into smaller pieces and flushed while the last ones run, 95% and 94% (13:15;
  alone / model-only 195/230 and 205/231, 84.8% and 88.7%). The rest is the gap between batches: the handler
  returns, the offsets are committed, the next batch is fetched and claimed in the inbox.
- Every MiniLM run of the current code (--encoders minilm --loop-items 30 --raw-messages 5000 and the full runs),
  alone / model-only: 84.8%, 88.7%, 88.4% (the full run of 13:34), 80.3%, 87.4%; 15:03-15:14 four in a row: 242/272
  (88.7%), 213/263 (80.9%), 228/238 (95.9%), 216/252 (85.5%), workers busy 92-95% in each. Median of the nine
  87.4%; six of nine at 85% or more. Model-only itself ranged 238-272 texts/s in those ten minutes.

Usage: python bench/pipeline_throughput.py [--items 3000] [--encoders hashing,minilm] [--loop-items 150]
Writes bench/results/pipeline_throughput.json and prints tables. Service logs: var/bench/<namespace>/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import grpc  # noqa: E402
from _common import REPO, cpu_seconds, environment, infra_pids, steal_seconds, table, write_result  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
import footprint  # noqa: E402
from pipeline_stats import by_group, first_timestamps, stage_stats  # noqa: E402

from labelmesh.bootstrap import ingest_trusted  # noqa: E402
from labelmesh.client import GatewayClient  # noqa: E402
from labelmesh.datasets import Row, categories, load  # noqa: E402
from labelmesh.infra import create_topics  # noqa: E402
from labelmesh.runtime.settings import CommonSettings  # noqa: E402
from labelmesh.stack import SERVICES, SINGLETONS, Stack  # noqa: E402
from pymongo import AsyncMongoClient  # noqa: E402
from schemas.events import ItemIngested, ModelUpdated, TextPayload  # noqa: E402
from schemas.rpc import gateway_pb2 as pb  # noqa: E402

PROJECT = "bench"
FOLLOWED = ("item.ingested", "item.prelabeled", "item.routed", "label.finalized", "model.updated", "deadletter")
GOAL_ROUTED_ITEMS_PER_S = 1000.0
GOAL_SHARE_OF_MODEL = 0.85
CALL_DEADLINE_S = 20.0
LEASE_SECONDS = 60  # a lease held by a call that never answered frees its slot after this long


def now_ms() -> float:
    return time.time() * 1000.0


# --- 1. the broker's own ceiling -------------------------------------------------------------------------
def ingested_payload(row: Row) -> bytes:
    return ItemIngested(producer="gateway", project=PROJECT, item_id=row.item_id, payload=TextPayload(text=row.text),
                        source="bench", dataset="default").model_dump_json().encode()


async def raw_kafka(bootstrap: str, prefix: str, rows: list[Row], n: int) -> dict[str, Any]:
    """Produce n item.ingested-sized records (same producer settings as the services) while a consumer reads them."""
    topic = f"{prefix}bench.raw"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    values = [(rows[i % len(rows)].item_id.encode(), ingested_payload(rows[i % len(rows)])) for i in range(n)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        await consumer.seek_to_beginning()

        async def consume() -> float:
            got = 0
            while got < n:
                for records in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                    got += len(records)
            return time.perf_counter()

        reader = asyncio.create_task(consume())
        start = time.perf_counter()
        futures = [await producer.send(topic, value, key=key) for key, value in values]
        await asyncio.gather(*futures)
        produced = time.perf_counter()
        consumed = await asyncio.wait_for(reader, 300)
    finally:
        await producer.stop()
        await consumer.stop()
    # Consume-only: a second reader over the full topic once everything is on it.
    again = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                             enable_auto_commit=False)
    await again.start()
    try:
        read, t0 = 0, time.perf_counter()
        while read < n:
            for records in (await again.getmany(timeout_ms=200, max_records=5000)).values():
                read += len(records)
        consume_only = time.perf_counter() - t0
    finally:
        await again.stop()
    return {
        "messages": n,
        "message_bytes_mean": statistics.fmean(len(v) for _, v in values),
        "producer": "aiokafka, acks=all, idempotent, linger_ms=5 (as the services)",
        "produce_msgs_per_s": n / (produced - start),
        "produce_and_consume_msgs_per_s": n / (consumed - start),
        "consume_only_msgs_per_s": n / consume_only,
    }


# --- 2. the running pipeline -----------------------------------------------------------------------------
@dataclass
class TopicLog:
    """(item id, record timestamp) per topic, plus the values needed later, read as any consumer would."""

    times: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: {t: [] for t in FOLLOWED})
    values: dict[str, list[bytes]] = field(default_factory=lambda: {t: [] for t in FOLLOWED})
    seen: dict[str, set[str]] = field(default_factory=lambda: {t: set() for t in FOLLOWED})

    async def follow(self, bootstrap: str, prefix: str, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(*(prefix + t for t in FOLLOWED), bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    max_partition_fetch_bytes=16 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
        await consumer.start()
        try:
            while not stop.is_set():
                for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                    topic = tp.topic.removeprefix(prefix)
                    for r in records:
                        item = r.key.decode() if r.key else ""
                        self.times[topic].append((item, r.timestamp))
                        self.seen[topic].add(item)
                        if topic in ("item.routed", "label.finalized", "model.updated", "deadletter"):
                            self.values[topic].append(r.value)
        finally:
            await consumer.stop()

    async def wait_for(self, topic: str, items: set[str], timeout_s: float, stack: Stack) -> bool:
        deadline = time.monotonic() + timeout_s
        while not items <= self.seen[topic]:
            if time.monotonic() > deadline:
                return False
            _alive(stack)
            await asyncio.sleep(0.2)
        return True


def _alive(stack: Stack) -> None:
    """Fail fast when a service process has gone (the machine is shared: someone may have stopped it)."""
    for name, proc in stack.processes.items():
        if proc.process is not None and proc.process.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.process.returncode} mid-run; see {proc.log_path}")


async def _bot(client: GatewayClient, truth: dict[str, str], stop: asyncio.Event, counts: Counter[str],
               name: str, idle_s: float, errors: Counter[str]) -> None:
    """A simulated annotator that answers each task at once with the dataset's label."""
    while not stop.is_set():
        try:
            # A deadline on every call, as a real tool would set: a call that never returns must not stop the bot.
            task = await asyncio.wait_for(client.lease(PROJECT), CALL_DEADLINE_S)
            if task is None:
                await asyncio.sleep(idle_s)
                continue
            response = await asyncio.wait_for(client.submit(task.task_id, truth[task.item_id], key=task.task_id,
                                                            time_spent_ms=1), CALL_DEADLINE_S)
            # A duplicate is the gateway handing back a lease already submitted: counted apart, not as work.
            counts[f"{name} (duplicate)" if response.duplicate else name] += 1
        except (grpc.aio.AioRpcError, TimeoutError) as exc:  # counted and reported; the bot carries on
            reason = f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.aio.AioRpcError) else \
                f"no answer within {CALL_DEADLINE_S:.0f}s"
            if not errors:
                print(f"  {name}: {reason}", flush=True)
            errors[reason[:200]] += 1
            await asyncio.sleep(idle_s)


async def _ingest(client: GatewayClient, rows: list[Row], batch: int, concurrency: int) -> None:
    queue = [rows[i:i + batch] for i in range(0, len(rows), batch)]

    async def worker() -> None:
        while queue:
            chunk = queue.pop(0)
            response = await client.ingest_items([pb.IngestItem(project=PROJECT, item_id=r.item_id, text=r.text,
                                                                source="bench") for r in chunk])
            assert response.accepted == len(chunk), response

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _pids(stack: Stack) -> dict[str, int]:
    pids = {name: p.process.pid for name, p in stack.processes.items() if p.process}
    return pids | infra_pids() | {"bench": os.getpid()}


def _cpu_snapshot(stack: Stack) -> dict[str, float]:
    snapshot = {}
    for name, pid in _pids(stack).items():
        try:
            snapshot[name] = cpu_seconds(pid)
        except (OSError, IndexError, ValueError):
            pass
    snapshot["steal"] = steal_seconds()
    return snapshot


async def settled_lag(base: CommonSettings, namespace: str, prefix: str, within_s: float) -> dict[str, Any]:
    """Every consumer group's lag once it reaches 0, or as it stands after `within_s` (polled each second)."""
    from labelmesh.replay import consumer_lag

    settings = base.model_copy(update={"namespace": namespace, "topic_prefix": prefix})
    deadline, started = time.monotonic() + within_s, time.monotonic()
    while True:
        lag = {group: n for service in SERVICES for group, n in (await consumer_lag(settings, service)).items()}
        if not any(lag.values()) or time.monotonic() > deadline:
            return {"groups": lag, "total": sum(lag.values()), "seconds_to_settle": time.monotonic() - started}
        await asyncio.sleep(1.0)


def cpu_ms_per_item(stack: Stack, before: dict[str, float], after: dict[str, float], items: int) -> dict[str, float]:
    """CPU-ms per burst item of each service, all its replicas summed, and of the five together ("services")."""
    per = {service: sum(after[p.name] - before.get(p.name, 0.0) for p in stack.instances(service) if p.name in after)
           * 1000.0 / items for service in SERVICES}
    return {**{k: round(v, 3) for k, v in per.items()}, "services": round(sum(per.values()), 3)}


def _peak_rss_mb(stack: Stack) -> dict[str, float]:
    """Each process's peak resident memory so far (VmHWM): whether memory stayed bounded under the burst."""
    peaks = {}
    for name, pid in _pids(stack).items():
        try:
            line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:"))
            peaks[name] = round(int(line.split()[1]) / 1024, 1)
        except (OSError, StopIteration, ValueError):
            pass
    return peaks


def _scrape(port: int) -> list[Any]:
    """A service's /metrics, parsed into metric families (prometheus_client's parser)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return list(text_string_to_metric_families(response.read().decode()))


def _histogram_sums(stack: Stack) -> dict[str, dict[str, list[float]]]:
    """Per histogram family and 'service label...': [seconds, observations] so far, from each service's /metrics."""
    families = {"labelmesh_mongo_command_seconds": ("command", "collection"),
                "labelmesh_batch_phase_seconds": ("phase",), "labelmesh_batch_seconds": ()}
    out: dict[str, dict[str, list[float]]] = {f: {} for f in families}
    for name, proc in stack.processes.items():
        try:
            scraped = _scrape(proc.port)
        except OSError:
            continue
        for family in scraped:
            if family.name not in families:
                continue
            for sample in family.samples:
                key = " ".join([name, *(str(sample.labels.get(k)) for k in families[family.name])])
                slot = 0 if sample.name.endswith("_sum") else 1 if sample.name.endswith("_count") else None
                if slot is not None:
                    out[family.name].setdefault(key, [0.0, 0.0])[slot] += sample.value
    return out


def _encode_seconds(stack: Stack) -> tuple[float, float]:
    """The prelabeler's embedding seconds so far, summed over its workers, and its worker count (/metrics)."""
    busy, workers = 0.0, 0.0
    for family in _scrape(stack.processes["prelabeler"].port):
        for sample in family.samples:
            if sample.name == "labelmesh_prelabeler_encode_seconds_sum":
                busy = sample.value
            elif sample.name == "labelmesh_prelabeler_encode_workers":
                workers = sample.value
    return busy, workers


def _during(before: dict[str, dict[str, list[float]]], after: dict[str, dict[str, list[float]]], family: str,
            fields: tuple[str, ...], top: int = 25) -> list[dict[str, Any]]:
    """A histogram's largest time sums between two snapshots, largest first."""
    rows = []
    for key, (seconds, count) in after[family].items():
        s0, c0 = before[family].get(key, [0.0, 0.0])
        if count - c0 > 0:
            rows.append({**dict(zip(("service", *fields), key.split(" "), strict=True)),
                         "seconds": round(seconds - s0, 3), "observations": int(count - c0),
                         "ms_each": round(1000 * (seconds - s0) / (count - c0), 3)})
    return sorted(rows, key=lambda r: -r["seconds"])[:top]


async def prelabeler_alone(stack: Stack, log: TopicLog, rows: list[Row], base: CommonSettings, prefix: str,
                           timeout_s: float) -> dict[str, Any]:
    """The prelabeler stage with nothing else running: the other four services are paused (SIGSTOP) and
    item.ingested records are produced straight to the topic (as the gateway does), so the rate is the
    prelabeler's own (consume, inbox, embed, store, publish on the real broker and database), to set
    beside the model-only rate. In the full pipeline the other services share the two cores with it."""
    import signal

    others = [p.process for name, p in stack.processes.items() if name != "prelabeler" and p.process]
    ids = {f"alone-{r.item_id}" for r in rows}
    producer = AIOKafkaProducer(bootstrap_servers=base.kafka_bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=5)
    await producer.start()
    encoding_before, workers = _encode_seconds(stack)
    for proc in others:
        proc.send_signal(signal.SIGSTOP)
    cpu_before, wall_before = _cpu_snapshot(stack), time.monotonic()
    try:
        t_first_send = now_ms()
        events = [ItemIngested(producer="bench", project=PROJECT, item_id=f"alone-{r.item_id}",
                               payload=TextPayload(text=r.text), source="bench") for r in rows]
        sends = [await producer.send(prefix + ItemIngested.TOPIC, e.model_dump_json().encode(), key=e.key.encode())
                 for e in events]
        await asyncio.gather(*sends)
        arrived = await log.wait_for("item.prelabeled", ids, timeout_s, stack)
        wall = time.monotonic() - wall_before
        cpu_after = _cpu_snapshot(stack)
    finally:
        for proc in others:
            proc.send_signal(signal.SIGCONT)
        await producer.stop()
    ingested = first_timestamps(log.times["item.ingested"], ids)
    prelabeled = first_timestamps(log.times["item.prelabeled"], ids)
    encoding = _encode_seconds(stack)[0] - encoding_before
    return {"items": len(rows), "all_prelabeled": arrived, "wall_seconds": wall,
            # Its workers' embedding time over what they could have spent (wall x workers): how much of the
            # service's embedding capacity was in use, whatever the machine's speed at that moment.
            "encode_seconds": round(encoding, 2), "encode_workers": workers,
            "encode_utilisation": encoding / (wall * workers) if wall and workers else None,
            # The bench's own share: producing the items and following every topic, as consumers would.
            "cpu_seconds": {k: round(cpu_after[k] - cpu_before.get(k, 0.0), 2) for k in cpu_after
                            if k in ("prelabeler", "kafka", "ferretdb", "bench", "steal")},
            "load_average_after": os.getloadavg(),
            "send_to_prelabeled": _stats(stage_stats(ingested, prelabeled, ids, t_first_send)),
            "ingest_to_prelabeled": _stats(stage_stats(ingested, prelabeled, ids))}


def _tiers(values: list[bytes], items: set[str]) -> dict[str, str]:
    """Each item's first routing decision as 'tier' or 'tier+spot' (spot-checked auto items need a person)."""
    tier: dict[str, str] = {}
    for raw in values:
        event = json.loads(raw)
        if event["item_id"] in items and event["item_id"] not in tier:
            tier[event["item_id"]] = event["tier"] + ("+spot" if event.get("spot_check") else "")
    return tier


def _stats(s: Any) -> dict[str, Any]:
    return s.as_dict()


async def pipeline_run(encoder: str, rows: list[Row], args: argparse.Namespace, base: CommonSettings) -> dict[str, Any]:
    namespace = f"bench{encoder.replace('-', '')}{int(time.time())}"
    prefix = f"{namespace}."
    admin_token = secrets.token_urlsafe(16)
    await create_topics(base.kafka_bootstrap, prefix)
    log_dir = REPO / "var" / "bench" / namespace
    stack = Stack(
        env={"LABELMESH_NAMESPACE": namespace, "LABELMESH_TOPIC_PREFIX": prefix,
             "LABELMESH_KAFKA_BOOTSTRAP": base.kafka_bootstrap, "LABELMESH_MONGO_URI": base.mongo_uri,
             "LABELMESH_PRELABELER_ENCODER": encoder, "LABELMESH_GATEWAY_ADMIN_TOKEN": admin_token,
             "LABELMESH_GATEWAY_GOLDEN_RATE": "0.0", "LABELMESH_GATEWAY_LEASE_SECONDS": str(LEASE_SECONDS),
             "LABELMESH_TRAINER_FIRST_MODEL_MIN": str(int(args.bootstrap * 0.8)),
             # No retraining inside the measurement: a training run would share the two cores with the burst.
             "LABELMESH_TRAINER_RETRAIN_EVERY": "1000000"},
        log_dir=log_dir, port_offset=args.port_offset, grpc_port=args.grpc_port,
        replicas={s: 1 if s in SINGLETONS else args.replicas for s in SERVICES},
    )
    boot = rows[:args.bootstrap]
    loop_rows = rows[args.bootstrap:args.bootstrap + args.loop_items]
    burst = rows[args.bootstrap + args.loop_items:][:args.items]
    truth = {r.item_id: r.label for r in rows}
    log, stop_log, stop_bots = TopicLog(), asyncio.Event(), asyncio.Event()
    print(f"\n[{encoder}] namespace {namespace}: starting the five services", flush=True)
    started = time.monotonic()
    await stack.start_all()
    follower = asyncio.create_task(log.follow(base.kafka_bootstrap, prefix, stop_log))
    # What the services keep only for a while, and their memory, through the run (bench/footprint.py).
    mongo: AsyncMongoClient = AsyncMongoClient(base.mongo_uri, tz_aware=True)
    samples: list[dict[str, Any]] = []
    stop_sampling = asyncio.Event()
    sampler = asyncio.create_task(footprint.follow(mongo, namespace, SERVICES, lambda: _pids(stack),
                                                   args.footprint_every_s, stop_sampling, samples))
    client = GatewayClient(f"127.0.0.1:{args.grpc_port}", admin_token)
    result: dict[str, Any] = {"encoder": encoder, "namespace": namespace, "logs": str(log_dir.relative_to(REPO)),
                              "load_average_at_start": os.getloadavg()}
    try:
        await client.configure_project(PROJECT, categories(), guidelines="Label the customer's banking intent.")
        names = [f"bot-{i}" for i in range(args.bots)] + ["bot-expert"]
        tokens = {n: await client.create_annotator(n, "expert" if n == "bot-expert" else "annotator") for n in names}
        print(f"[{encoder}] services up in {time.monotonic() - started:.0f}s; bootstrapping from {len(boot)} rows",
              flush=True)
        t_boot = time.monotonic()
        await ingest_trusted(client, PROJECT, boot)
        while not log.values["model.updated"]:
            if time.monotonic() - t_boot > args.timeout:
                raise TimeoutError("no model.updated after bootstrapping")
            _alive(stack)
            await asyncio.sleep(0.5)
        model = ModelUpdated.model_validate_json(log.values["model.updated"][0])
        result["bootstrap"] = {"rows": len(boot), "seconds_to_model": time.monotonic() - t_boot,
                               "model_version": model.model_version,
                               "heldout_accuracy": model.heldout_metrics.get("heldout_accuracy"),
                               "thresholds": model.recommended_thresholds.model_dump()}
        print(f"[{encoder}] model v{model.model_version} after {result['bootstrap']['seconds_to_model']:.0f}s", flush=True)

        # Loop phase: a trickle the pipeline can keep up with, and bots that answer at once.
        counts: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        # With gateway replicas the bots are spread over them, as a load balancer would spread a team.
        ports = stack.grpc_ports
        bot_clients = [GatewayClient(f"127.0.0.1:{ports[i % len(ports)]}", tokens[n]) for i, n in enumerate(names)]
        bots = [asyncio.create_task(_bot(c, truth, stop_bots, counts, n, args.bot_idle_s, errors))
                for c, n in zip(bot_clients, names, strict=True)]
        loop_ids = {r.item_id for r in loop_rows}
        t_loop = time.monotonic()
        for i in range(0, len(loop_rows), args.loop_batch):
            await _ingest(client, loop_rows[i:i + args.loop_batch], args.loop_batch, 1)
            await asyncio.sleep(args.loop_interval_s)
        finished = await log.wait_for("label.finalized", loop_ids, args.timeout, stack)
        stop_bots.set()
        await asyncio.gather(*bots)
        for c in bot_clients:
            await c.close()
        loop_tiers = _tiers(log.values["item.routed"], loop_ids)
        ingested = first_timestamps(log.times["item.ingested"], loop_ids)
        finals = first_timestamps(log.times["label.finalized"], loop_ids)
        result["loop"] = {
            "items": len(loop_rows),
            "offered_items_per_s": args.loop_batch / args.loop_interval_s,
            "all_finalized": finished,
            "seconds": time.monotonic() - t_loop,
            "human_labels": dict(counts),
            "bot_errors": dict(errors),
            "tiers": dict(Counter(loop_tiers.values())),
            "ingest_to_routed": _stats(stage_stats(ingested, first_timestamps(log.times["item.routed"], loop_ids),
                                                   loop_ids)),
            "ingest_to_final": _stats(stage_stats(ingested, finals, loop_ids)),
            "ingest_to_final_by_tier": {k: _stats(v) for k, v in by_group(ingested, finals, loop_tiers).items()},
        }
        print(f"[{encoder}] loop phase: {len(finals)}/{len(loop_ids)} final labels in {result['loop']['seconds']:.0f}s",
              flush=True)

        # Burst phase: everything at once, as fast as the gateway takes it.
        burst_ids = {r.item_id for r in burst}
        load_before = os.getloadavg()
        cpu_before, wall_before = _cpu_snapshot(stack), time.monotonic()
        histograms_before = await asyncio.to_thread(_histogram_sums, stack)
        t_first_send = now_ms()
        await _ingest(client, burst, args.batch, args.concurrency)
        t_sent = now_ms()
        routed_all = await log.wait_for("item.routed", burst_ids, args.timeout, stack)
        wall = time.monotonic() - wall_before
        cpu_after = _cpu_snapshot(stack)
        histograms_after = await asyncio.to_thread(_histogram_sums, stack)
        load_after = os.getloadavg()
        burst_tiers = _tiers(log.values["item.routed"], burst_ids)
        auto_ids = {i for i, t in burst_tiers.items() if t == "auto"}
        await log.wait_for("label.finalized", auto_ids, args.final_grace_s, stack)
        ingested = first_timestamps(log.times["item.ingested"], burst_ids)
        prelabeled = first_timestamps(log.times["item.prelabeled"], burst_ids)
        routed = first_timestamps(log.times["item.routed"], burst_ids)
        finals = first_timestamps(log.times["label.finalized"], burst_ids)
        result["burst"] = {
            "items": len(burst),
            "grpc_batch": args.batch,
            "grpc_concurrency": args.concurrency,
            "all_routed": routed_all,
            "grpc_ingest_items_per_s": len(burst) / ((t_sent - t_first_send) / 1000.0),
            # Rates from the first item the client sent (so gRPC ingest is included) to the last arrival.
            "send_to_prelabeled": _stats(stage_stats(ingested, prelabeled, burst_ids, t_first_send)),
            "send_to_routed": _stats(stage_stats(ingested, routed, burst_ids, t_first_send)),
            # Latencies: item.ingested record timestamp -> the item's later record timestamps.
            "ingest_to_prelabeled": _stats(stage_stats(ingested, prelabeled, burst_ids)),
            "ingest_to_routed": _stats(stage_stats(ingested, routed, burst_ids)),
            "tiers": dict(Counter(burst_tiers.values())),
            "auto_ingest_to_final": _stats(stage_stats(ingested, finals, auto_ids)),
            "cpu_seconds_during_burst": {k: round(cpu_after[k] - cpu_before.get(k, 0.0), 2) for k in cpu_after},
            "cpu_ms_per_item_by_service": cpu_ms_per_item(stack, cpu_before, cpu_after, len(burst)),
            "peak_rss_mb_after_burst": _peak_rss_mb(stack),
            # Client-side times, summed over concurrent calls: where each service waited, not CPU.
            "database_commands_during_burst": _during(histograms_before, histograms_after,
                                                      "labelmesh_mongo_command_seconds", ("command", "collection")),
            "batch_phases_during_burst": _during(histograms_before, histograms_after,
                                                 "labelmesh_batch_phase_seconds", ("phase",), top=40),
            "batches_during_burst": _during(histograms_before, histograms_after, "labelmesh_batch_seconds", ()),
            "burst_wall_seconds": wall,
            "load_average_before_after": [load_before, load_after],
            "dead_letters": len(log.values["deadletter"]),
        }
        b = result["burst"]
        print(f"[{encoder}] burst: {b['send_to_routed']['arrived']}/{len(burst)} routed, "
              f"{b['send_to_routed']['items_per_s'] or 0:,.0f} items/s send->routed", flush=True)
        if args.settle_lag_s:
            result["consumer_lag_at_end"] = await settled_lag(base, namespace, prefix, args.settle_lag_s)
        if args.alone:
            result["prelabeler_alone"] = await prelabeler_alone(stack, log, burst, base, prefix, args.timeout)
            a = result["prelabeler_alone"]["send_to_prelabeled"]
            print(f"[{encoder}] prelabeler alone: {a['arrived']}/{len(burst)} prelabeled, "
                  f"{a['items_per_s'] or 0:,.0f} items/s", flush=True)
        if args.hold_s:  # the stack idles on, sampled, so the run outlives the services' retention window
            await asyncio.sleep(args.hold_s)
    finally:
        stop_bots.set()
        stop_log.set()
        stop_sampling.set()
        await follower
        await sampler
        await mongo.close()
        await client.close()
        result["exit_codes"] = stack.stop_all()
        result["footprint"] = {"every_s": args.footprint_every_s, "hold_s": args.hold_s,
                               "inbox_retention_s": CommonSettings().inbox_retention_s,
                               "inbox_prune_every_s": CommonSettings().inbox_prune_every_s,
                               "summary": footprint.summary(samples), "samples": samples}
    try:
        result["model_only"] = model_only(encoder, model, [r.text for r in burst], args)
    except Exception as exc:  # noqa: BLE001 - the pipeline numbers above are kept; the failure is recorded
        result["model_only"] = {"error": repr(exc)[:500]}
    if "texts_per_s" in result["model_only"]:
        share = (result["burst"]["send_to_prelabeled"]["items_per_s"] or 0) / result["model_only"]["texts_per_s"]
    else:
        share = None
    result["prelabeler_share_of_model_only"] = share
    if "prelabeler_alone" in result and "texts_per_s" in result["model_only"]:
        alone = result["prelabeler_alone"]["send_to_prelabeled"]["items_per_s"] or 0
        result["prelabeler_alone_share_of_model_only"] = alone / result["model_only"]["texts_per_s"]
    result["load_average_at_end"] = os.getloadavg()
    return result


# --- 3. the model's own throughput -----------------------------------------------------------------------
def model_only(encoder_spec: str, model: ModelUpdated, texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Encoder + the published head on the same texts, in this process, three ways; the fastest is the ceiling:
    - one call of the prelabeler's batch size at a time, torch on every CPU (a library user's first try);
    - chunks of 256 embedded concurrently from a thread pool, each on its share of threads (the prelabeler's
      plan until 2026-12-03);
    - the prelabeler's own plan: pieces of its piece size, longest first, from one queue shared by its
      workers, over all the texts at once (the service meets them in batches of max_batch: a harder case).
    """
    from concurrent.futures import ThreadPoolExecutor

    from labelmesh.ml.encoder import available_cpus, load_encoder
    from services.prelabeler.concurrency import embed_pieces, encode_plan, longest_first, piece_size
    from labelmesh.ml.artifact import load_artifact
    from services.prelabeler.settings import PrelabelerSettings

    settings = PrelabelerSettings()
    cpus = available_cpus()
    encoder = load_encoder(encoder_spec, settings.device)
    head = load_artifact(model, encoder.name).head
    plan = encode_plan(str(getattr(encoder, "device", "cpu")), cpus, settings.encode_workers)
    piece = piece_size(settings.encode_piece, getattr(encoder, "batch_size", None))

    def threads(n: int) -> None:
        if hasattr(encoder, "device"):  # torch's intra-op pool; the hashing stub has none
            import torch

            torch.set_num_threads(n)

    def run(chunk: list[str]) -> Any:
        result = encoder.encode_with_info(chunk)
        head.top_k(result.embeddings, settings.top_k)
        return result

    async def pieces() -> None:
        async for _ in embed_pieces(run, texts, longest_first(texts, piece, plan.workers), plan.workers):
            pass

    stolen: list[float] = []

    def timed(fn: Any) -> float:
        times = []
        for _ in range(args.model_repeats if encoder_spec.startswith("hashing") else 1):
            start, steal = time.perf_counter(), steal_seconds()
            fn()
            times.append(time.perf_counter() - start)
            stolen.append(steal_seconds() - steal)
        return statistics.median(times)

    run(texts[:64])  # warm-up
    calls = [texts[i:i + settings.max_batch] for i in range(0, len(texts), settings.max_batch)]
    chunks = [texts[i:i + 256] for i in range(0, len(texts), 256)]
    threads(cpus)
    sequential = timed(lambda: [run(c) for c in calls])
    threads(plan.threads)
    with ThreadPoolExecutor(plan.workers) as pool:
        concurrent = timed(lambda: list(pool.map(run, chunks)))
    with ThreadPoolExecutor(1) as loop_thread:  # this function runs inside the benchmark's own event loop
        shared_queue = timed(lambda: loop_thread.submit(asyncio.run, pieces()).result())
    threads(cpus)
    seconds = min(sequential, concurrent, shared_queue)
    return {"texts": len(texts), "call_size": settings.max_batch, "repeats": 1 if not encoder_spec.startswith("hashing")
            else args.model_repeats, "seconds": seconds, "texts_per_s": len(texts) / seconds,
            "one_call_at_a_time": {"threads": cpus, "texts_per_s": len(texts) / sequential},
            "concurrent_chunks": {"chunk": 256, "workers": plan.workers, "threads": plan.threads,
                                  "texts_per_s": len(texts) / concurrent},
            "longest_first_pieces": {"piece": piece, "workers": plan.workers, "threads": plan.threads,
                                     "texts_per_s": len(texts) / shared_queue},
            "steal_seconds": round(sum(stolen), 2), "load_average": os.getloadavg()}


# --- report ----------------------------------------------------------------------------------------------
def _fmt(v: float | None, spec: str = ",.0f") -> str:
    return "-" if v is None else format(v, spec)


def print_tables(payload: dict[str, Any]) -> None:
    raw = payload["raw_kafka"]
    print(f"\nraw aiokafka, {raw['messages']} messages of {raw['message_bytes_mean']:.0f} B: "
          f"produce {raw['produce_msgs_per_s']:,.0f}/s, produce+consume {raw['produce_and_consume_msgs_per_s']:,.0f}/s, "
          f"consume only {raw['consume_only_msgs_per_s']:,.0f}/s")
    rows = []
    for run in payload["runs"]:
        b = run["burst"]
        for stage in ("send_to_prelabeled", "send_to_routed"):
            lat = b[stage.replace("send_to", "ingest_to")]
            rows.append([run["encoder"], stage.replace("send_to_", "ingest -> "), f"{b[stage]['arrived']}/{b['items']}",
                         _fmt(b[stage]["items_per_s"]), _fmt(lat["p50_ms"]), _fmt(lat["p99_ms"])])
        if "prelabeler_alone" in run:
            a = run["prelabeler_alone"]
            rows.append([run["encoder"], "ingest -> prelabeled, prelabeler alone",
                         f"{a['send_to_prelabeled']['arrived']}/{a['items']}", _fmt(a["send_to_prelabeled"]["items_per_s"]),
                         _fmt(a["ingest_to_prelabeled"]["p50_ms"]), _fmt(a["ingest_to_prelabeled"]["p99_ms"])])
        m = run["model_only"]
        rows.append([run["encoder"], "model only (encoder + head), the fastest of:", str(m.get("texts", "-")),
                     _fmt(m.get("texts_per_s")), "", ""])
        for name, key in (("one call at a time", "one_call_at_a_time"), ("concurrent chunks", "concurrent_chunks"),
                          ("longest-first pieces, shared queue", "longest_first_pieces")):
            if key in m:
                rows.append([run["encoder"], f"  {name}", "", _fmt(m[key]["texts_per_s"]), "", ""])
    print("\nburst: N items ingested over gRPC as fast as possible (rates from the first send; latency from the "
          "item.ingested record)")
    print(table(["encoder", "stage", "arrived", "items/s", "p50 ms", "p99 ms"], rows))
    rows = []
    for run in payload["runs"]:
        loop = run["loop"]
        for tier, s in loop["ingest_to_final_by_tier"].items():
            rows.append([run["encoder"], tier, f"{s['arrived']}/{s['items']}", _fmt(s["p50_ms"]), _fmt(s["p99_ms"])])
        s = loop["ingest_to_routed"]
        rows.append([run["encoder"], "(ingest -> routed)", f"{s['arrived']}/{s['items']}", _fmt(s["p50_ms"]),
                     _fmt(s["p99_ms"])])
    print(f"\nloop: ingest -> final label per tier, bots answering at once (offered "
          f"{payload['settings']['loop_batch'] / payload['settings']['loop_interval_s']:.0f} items/s)")
    print(table(["encoder", "tier", "final/items", "p50 ms", "p99 ms"], rows))
    print("\ngoals")
    for goal in payload["goals"]:
        print(f"  {goal['goal']}: measured {_fmt(goal['measured'], ',.3f')} -> {'met' if goal['met'] else 'NOT met'}")
    for run in payload["runs"]:
        alone = run.get("prelabeler_alone", {})
        if alone.get("encode_utilisation") is not None:
            print(f"  {run['encoder']}: the prelabeler alone kept its {alone['encode_workers']:.0f} embedding workers "
                  f"busy {alone['encode_utilisation']:.0%} of the time; the hypervisor took "
                  f"{alone['cpu_seconds'].get('steal', 0):.1f} CPU-s meanwhile, "
                  f"{run['model_only'].get('steal_seconds', 0):.1f} during model-only")
    env = payload["environment"]
    print(f"load average (1/5/15 min) at start {env['load_average_1_5_15']}, at end {payload['load_average_at_end']} "
          f"on {env['cpus_available']} CPUs")


def _commit() -> str:
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def goals(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for run in runs:
        if run["encoder"].startswith("hashing"):
            v = run["burst"]["send_to_routed"]["items_per_s"] or 0.0
            out.append({"goal": f"(a) stub model: >= {GOAL_ROUTED_ITEMS_PER_S:,.0f} items/s ingest -> routed",
                        "measured": v, "met": v >= GOAL_ROUTED_ITEMS_PER_S})
        else:
            v = run["prelabeler_share_of_model_only"]
            out.append({"goal": f"(b) {run['encoder']}: prelabeler stage >= {GOAL_SHARE_OF_MODEL:.0%} of model-only",
                        "measured": v, "met": v is not None and v >= GOAL_SHARE_OF_MODEL})
            if "prelabeler_alone_share_of_model_only" in run:
                v = run["prelabeler_alone_share_of_model_only"]
                out.append({"goal": f"#3 {run['encoder']}: the prelabeler service alone >= {GOAL_SHARE_OF_MODEL:.0%} "
                                    "of model-only", "measured": v, "met": v >= GOAL_SHARE_OF_MODEL})
    return out


async def main_async(args: argparse.Namespace) -> None:
    env_at_start = environment()
    base = CommonSettings()
    rows = load("train")
    random.Random(args.seed).shuffle(rows)
    needed = args.bootstrap + args.loop_items + args.items
    if needed > len(rows):
        if not args.repeat_texts:
            raise SystemExit(f"BANKING77 train has {len(rows)} rows; --bootstrap + --loop-items + --items = {needed} "
                             "(--repeat-texts reuses them as new items)")
        # A load test beyond the data set: the texts again, as new items (new ids), in the same order.
        rows = [Row(item_id=f"{r.item_id}-r{i // len(rows)}" if i >= len(rows) else r.item_id, text=r.text,
                    label=r.label) for i, r in ((i, rows[i % len(rows)]) for i in range(needed))]
    rows = rows[:needed]
    raw = await raw_kafka(base.kafka_bootstrap, f"benchraw{int(time.time())}.", rows[-args.items:], args.raw_messages)
    print(f"raw aiokafka: {raw['produce_and_consume_msgs_per_s']:,.0f} msgs/s produce+consume", flush=True)
    payload: dict[str, Any] = {
        "benchmark": "pipeline_throughput",
        "commit": _commit(),
        "environment": env_at_start,
        "settings": dict(vars(args)),
        "raw_kafka": raw,
        "runs": [],
    }
    for encoder in args.encoders.split(","):
        payload["runs"].append(await pipeline_run(encoder, rows, args, base))
        # Written after each run, so a later run that fails or is stopped leaves the earlier numbers.
        payload |= {"goals": goals(payload["runs"]), "load_average_at_end": os.getloadavg()}
        path = write_result(args.output, payload)
    print_tables(payload)
    print(f"wrote {path}")


def parser() -> argparse.ArgumentParser:
    """This benchmark's options, with their defaults (bench/replica_cost.py runs it with them)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=3000, help="items in the burst")
    ap.add_argument("--encoders", default="hashing,minilm")
    ap.add_argument("--bootstrap", type=int, default=500, help="trusted rows that train model v1")
    ap.add_argument("--loop-items", type=int, default=150, help="items in the loop phase (bots label them)")
    ap.add_argument("--loop-batch", type=int, default=5)
    ap.add_argument("--loop-interval-s", type=float, default=0.5)
    ap.add_argument("--bots", type=int, default=4, help="annotator bots (plus one expert bot)")
    ap.add_argument("--bot-idle-s", type=float, default=0.1, help="a bot's pause when no task is waiting")
    ap.add_argument("--batch", type=int, default=500, help="items per IngestItems call in the burst")
    ap.add_argument("--concurrency", type=int, default=2, help="IngestItems calls in flight in the burst")
    ap.add_argument("--raw-messages", type=int, default=20000)
    ap.add_argument("--model-repeats", type=int, default=3, help="repeats of the (fast) stub's model-only timing")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for any one phase")
    ap.add_argument("--final-grace-s", type=float, default=60.0, help="wait for the burst's auto final labels")
    ap.add_argument("--port-offset", type=int, default=400, help="service HTTP ports 9101+offset..9105+offset")
    ap.add_argument("--grpc-port", type=int, default=50451)
    ap.add_argument("--alone", action=argparse.BooleanOptionalAction, default=True,
                    help="after the burst, time the prelabeler with the other services paused")
    ap.add_argument("--repeat-texts", action="store_true",
                    help="allow more items than BANKING77 has rows, by reusing its texts under new item ids")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--replicas", type=int, default=1, help="processes per service (the trainer runs one)")
    ap.add_argument("--settle-lag-s", type=float, default=0.0,
                    help="after the burst, wait up to this long for every consumer group's lag to reach 0 (0: skip)")
    ap.add_argument("--output", default="pipeline_throughput", help="result name under bench/results/")
    ap.add_argument("--footprint-every-s", type=float, default=20.0,
                    help="seconds between samples of the services' pruned documents and memory")
    ap.add_argument("--hold-s", type=float, default=0.0,
                    help="seconds the stack idles after the burst, still sampled (set LABELMESH_INBOX_RETENTION_S "
                         "shorter than the run to see the inbox pruned)")
    return ap


def main() -> None:
    asyncio.run(main_async(parser().parse_args()))


if __name__ == "__main__":
    main()
