"""Stack floor: what Kafka, FerretDB and Python cost per item with no labelmesh logic at all (issue #9).

Needs Kafka and FerretDB up (`bash deploy/local/up.sh`). The throughput goals of issue #9 ask, on this
2-core machine, for (a) 1,000 items/s ingest -> item.routed with a stub model and (b) 85% of the model's
own throughput inside the full pipeline. Both come down to one budget: CPU milliseconds per item for
everything that is not the model. This script measures the least any design on the chosen stack
(aiokafka, Kafka, FerretDB, pydantic events; DESIGN.md) can spend, by running the pipeline's shape with
every service reduced to "decode, write, publish":

- five processes, one per service, each with its own consumer group on the services' topics and the
  services' producer settings (acks=all, idempotent, linger 5 ms, 1 MiB batches);
- the same fan-out as the services: item.ingested is read by the prelabeler and qc, item.prelabeled by
  the router, qc and the trainer, item.routed by the gateway and qc;
- the same event bodies: pydantic events from schemas/events.py (an item.prelabeled carries the
  384-float embedding and a top-5), validated on the way in with parse_event, as the bus does;
- `--writes`: `none`; `one` (one insert_many per consumed batch, one document per event: the gateway's
  item and task, the prelabeler's pre-label, the router's decision, qc's three records, the trainer's
  example; 8 documents per item, against ~15 in the services, which also update documents in place);
  `inbox`: `one` inside the services' own exactly-once inbox (labelmesh/runtime/inbox.py: per batch an
  in-flight record, one claim per event, the in-flight record deleted at the end), as the bus runs it.

What it leaves out, and the services do not: updates, reads, locks, retries, metrics, the model, gRPC
(the gateway process produces item.ingested itself), task leasing, and (but in `inbox`) the inbox. So its items/s is an
upper bound for the services on this machine, and its CPU-ms per item a lower bound.

Then the encoder alone (`--model`, MiniLM), as the prelabeler runs it on CPU, for its rate and CPU-ms per
text: on CPUs it shares with everything else, a pipeline cannot pass cpus / (model + floor) CPU-ms per item
(pipeline_stats.cpu_bound_ceiling), and that over the model's own rate bounds goal (b).

Results (bench/results/stack_floor.json, 2026-12-03 17:14-17:16, one run, 3,000 items, three passes of each
variant alternating, medians; the services' own burst in pipeline_throughput.json: 382 items/s to routed,
5.1 CPU-ms per item, FerretDB 2.4 of them):

| writes | items/s ingest -> routed (3 passes) | CPU-ms per item | Python | Kafka | FerretDB | (b) ceiling |
|---|---|---|---|---|---|---|
| none | 1,544 (1,544-2,083) | 1.11 | 0.80 | 0.32 | - | 93% |
| one | 1,296 (1,229-1,392) | 1.40 | 0.87 | 0.34 | 0.19 | 90% |
| inbox | 891 (890-1,125) | 2.06 | 1.18 | 0.30 | 0.58 | 84% |

- MiniLM alone: 252 texts/s, 7.40 CPU-ms per text, 1.87 CPUs busy.
- At 1,000 items/s two CPUs give 2.0 CPU-ms per item. The services' exactly-once inbox with nothing else
  (no domain logic, no updates, no reads, no metrics) already takes 1.8-2.2 of them, and runs at 891 items/s
  by the median. So goal (a) is out of reach of any design on this stack and machine that keeps the inbox;
  without it, 0.6 CPU-ms per item would be left for the five services' work, which now costs ~4.
- Goal (b): even the `inbox` floor caps the pipeline at 84% of the model's rate, the `one` floor at 90%. The
  services spend 5.1 CPU-ms per item with the stub, a ceiling of 2,000 / (7.40 + 5.1) = 160 items/s, 63%
  (measured: 39%). On a GPU the model would leave the CPUs to the rest; none was lent.
- The passes vary by 10-35% within minutes (the `none` pass of 2,083 items/s, the `inbox` pass of 1,125), so
  the medians are what to read.

Usage: python bench/stack_floor.py [--items 3000] [--repeats 3] [--writes none,one,inbox] [--model minilm]
Writes bench/results/stack_floor.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import os
import queue
import secrets
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the encoder's weights come from the installed package
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

try:
    from bench._common import cpu_seconds, environment, infra_pids, steal_seconds, table, write_result
    from bench.pipeline_stats import cpu_bound_ceiling
except ImportError:  # run as `python bench/stack_floor.py`
    from _common import cpu_seconds, environment, infra_pids, steal_seconds, table, write_result
    from pipeline_stats import cpu_bound_ceiling

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from pymongo import AsyncMongoClient  # noqa: E402

from labelmesh.datasets import load  # noqa: E402
from labelmesh.infra import create_topics  # noqa: E402
from labelmesh.runtime.bus import MAX_MESSAGE_BYTES, PRODUCER_BATCH_BYTES  # noqa: E402
from labelmesh.runtime.inbox import Inbox  # noqa: E402
from labelmesh.runtime.settings import CommonSettings  # noqa: E402
from schemas.events import (  # noqa: E402
    ItemIngested,
    ItemPrelabeled,
    ItemRouted,
    LabelScore,
    Thresholds,
    Tier,
    TextPayload,
    parse_event,
)

PROJECT = "floor"
INGEST_BATCH = 500  # the gRPC bench ingests in calls of 500 items
# Which topics each stand-in reads, as the services subscribe (services/*/app.py).
READS = {
    "gateway": ("item.routed",),
    "prelabeler": ("item.ingested",),
    "router": ("item.prelabeled",),
    "qc": ("item.ingested", "item.prelabeled", "item.routed"),
    "trainer": ("item.prelabeled",),
}
STAGES = tuple(READS)


def _producer(bootstrap: str) -> AIOKafkaProducer:
    # The bus's settings (labelmesh/runtime/bus.py), without FastStream around them.
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                            max_batch_size=PRODUCER_BATCH_BYTES, max_request_size=MAX_MESSAGE_BYTES)


def _top_k(rng: np.random.Generator) -> tuple[LabelScore, ...]:
    probs = np.sort(rng.dirichlet(np.ones(77)))[::-1][:5]
    return tuple(LabelScore(label=f"intent_{i}", probability=float(p)) for i, p in enumerate(probs))


def _next_event(name: str, event: Any, rng: np.random.Generator) -> Any:
    """What the stand-in publishes for a consumed event, built as the service builds it (or None)."""
    if name == "prelabeler":
        vector = rng.standard_normal(384)
        vector /= np.linalg.norm(vector)
        return ItemPrelabeled(producer=name, project=event.project, item_id=event.item_id, model_version=1,
                              encoder="stub", top_k=_top_k(rng), embedding=tuple(np.round(vector, 6).tolist()))
    if name == "router":
        return ItemRouted(producer=name, project=event.project, item_id=event.item_id, tier=Tier.SINGLE,
                          required_annotators=1, model_version=event.model_version, top_k=event.top_k,
                          thresholds=Thresholds(), reasons=("below auto_accept",))
    return None


async def _stage(name: str, bootstrap: str, prefix: str, mongo_uri: str, writes: str, items: int,
                 ready: Any, go: Any, spent: Any) -> None:
    """One service's stand-in; puts (name, CPU seconds from `go` to the end) on `spent`."""
    consumer = AIOKafkaConsumer(*(prefix + t for t in READS[name]), bootstrap_servers=bootstrap,
                                group_id=f"{prefix}{name}", auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=MAX_MESSAGE_BYTES)
    producer = _producer(bootstrap)
    client = AsyncMongoClient(mongo_uri) if writes != "none" else None
    db = client[f"{prefix.rstrip('.')}_{name}"] if client else None
    inbox = Inbox(db) if writes == "inbox" else None
    rng = np.random.default_rng(sum(map(ord, name)))
    await consumer.start()
    await producer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        ready.set()
        while not go.is_set():
            await asyncio.sleep(0.01)
        cpu_at_go = time.process_time()
        ingest = asyncio.create_task(_ingest(producer, db, prefix, items)) if name == "gateway" else None
        seen, want = 0, items * len(READS[name])  # one event per item from each topic it reads
        while seen < want:
            batches = await consumer.getmany(timeout_ms=50, max_records=500)
            records = [r for rs in batches.values() for r in rs]
            if not records:
                continue
            events = [parse_event(r.value) for r in records]
            claim = await inbox.begin(events) if inbox else None
            if db is not None:
                await db.records.insert_many([{"_id": f"{e.type}:{e.item_id}", "at": time.time()} for e in events],
                                             ordered=False)
            outgoing = [out for e in events if (out := _next_event(name, e, rng)) is not None]
            await _publish(producer, prefix, outgoing)
            if claim:
                await inbox.end(claim)
            await consumer.commit()
            seen += len(records)
        if ingest:
            await ingest
        spent.put((name, time.process_time() - cpu_at_go))
    finally:
        await consumer.stop()
        await producer.stop()
        if client:
            await client.close()


async def _publish(producer: AIOKafkaProducer, prefix: str, events: list[Any]) -> None:
    """Send events keyed by their subject and wait until the broker has them all, as the bus publishes."""
    pending = [await producer.send(prefix + e.TOPIC, e.model_dump_json().encode(), key=e.key.encode())
               for e in events]
    await asyncio.gather(*pending)


async def _ingest(producer: AIOKafkaProducer, db: Any, prefix: str, items: int) -> None:
    """The gateway's ingest without gRPC: per call of 500 items, store them, then publish item.ingested."""
    rows = load("train")
    for start in range(0, items, INGEST_BATCH):
        events = [ItemIngested(producer="gateway", project=PROJECT, item_id=f"i{i}",
                               payload=TextPayload(text=rows[i % len(rows)].text), source="bench")
                  for i in range(start, min(items, start + INGEST_BATCH))]
        if db is not None:
            await db.items.insert_many([{"_id": e.item_id, "text": e.payload.text} for e in events], ordered=False)
        await _publish(producer, prefix, events)


def _stage_main(name: str, *args: Any) -> None:
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # group coordinator chatter at every shutdown
    asyncio.run(_stage(name, *args))


def _last_routed_ms(bootstrap: str, topic: str, items: int) -> float:
    """The last Kafka timestamp on item.routed, read once every item is there."""

    async def read() -> float:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
        await consumer.start()
        try:
            stamps: list[int] = []
            while len(stamps) < items:
                for rs in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                    stamps.extend(r.timestamp for r in rs)
            return max(stamps)
        finally:
            await consumer.stop()

    return asyncio.run(read())


def _collect(spent: Any, procs: dict[str, Any], timeout: float) -> dict[str, float]:
    """Each stand-in's CPU seconds as it finishes; a stand-in that died, or a run past `timeout`, is an error."""
    deadline = time.monotonic() + timeout
    got: dict[str, float] = {}
    while len(got) < len(procs):
        try:
            name, seconds = spent.get(timeout=1.0)
            got[name] = seconds
        except queue.Empty:
            dead = [n for n, p in procs.items() if n not in got and p.exitcode is not None]
            if dead:
                raise RuntimeError(f"stand-in(s) {dead} exited before handling every item") from None
            if time.monotonic() > deadline:
                missing = sorted(set(procs) - set(got))
                raise RuntimeError(f"stand-ins {missing} not done after {timeout:.0f} s") from None
    return got


def run(writes: str, items: int, settings: CommonSettings, timeout: float) -> dict[str, Any]:
    """One pass of `items` items through the five stand-ins; rates and CPU per item from `go` to the end."""
    prefix = f"floor{secrets.token_hex(4)}."
    asyncio.run(create_topics(settings.kafka_bootstrap, prefix))
    ctx = mp.get_context("spawn")
    ready = {name: ctx.Event() for name in STAGES}
    go, spent = ctx.Event(), ctx.Queue()
    procs = {name: ctx.Process(target=_stage_main, name=name, daemon=True,
                               args=(name, settings.kafka_bootstrap, prefix, settings.mongo_uri, writes, items,
                                     ready[name], go, spent))
             for name in STAGES}
    for p in procs.values():
        p.start()
    try:
        for name, event in ready.items():
            if not event.wait(120):
                raise RuntimeError(f"{name} stand-in did not get its partitions")
        infra = infra_pids()
        before = {name: cpu_seconds(pid) for name, pid in infra.items()}
        steal = steal_seconds()
        started_ms = time.time() * 1000.0
        go.set()
        stand_ins = _collect(spent, procs, timeout)
        finished_ms = time.time() * 1000.0
        after = {name: cpu_seconds(pid) for name, pid in infra.items()}
        steal = steal_seconds() - steal
        for name, p in procs.items():
            p.join(30)
            if p.exitcode != 0:
                raise RuntimeError(f"{name} stand-in ended with {p.exitcode}")
    finally:
        for p in procs.values():
            if p.is_alive():
                p.kill()
    last_routed = _last_routed_ms(settings.kafka_bootstrap, prefix + "item.routed", items)
    cpu = {name: round(seconds, 2) for name, seconds in stand_ins.items()}
    cpu |= {name: round(after[name] - before[name], 2) for name in infra}
    per_item = {name: round(1000.0 * seconds / items, 3) for name, seconds in cpu.items()}
    per_item["stand_ins"] = round(1000.0 * sum(stand_ins.values()) / items, 3)
    per_item["total"] = round(1000.0 * sum(cpu.values()) / items, 3)
    return {"writes": writes, "items": items, "prefix": prefix,
            "ingest_to_routed_items_per_s": items / ((last_routed - started_ms) / 1000.0),
            "all_consumed_items_per_s": items / ((finished_ms - started_ms) / 1000.0),
            "cpu_seconds": cpu, "steal_seconds": round(steal, 2), "cpu_ms_per_item": per_item}


def model_cost(spec: str, texts: list[str]) -> dict[str, Any]:
    """The encoder alone on the same machine, as the prelabeler runs it on CPU: texts sorted by length, pieces
    of 128 embedded by one worker per CPU with one torch thread each. Wall-clock rate and CPU-ms per text."""
    from labelmesh.ml.encoder import available_cpus, load_encoder

    cpus = available_cpus()
    encoder = load_encoder(spec, "cpu", threads=1)
    ordered = sorted(texts, key=len, reverse=True)
    pieces = [ordered[i:i + 128] for i in range(0, len(ordered), 128)]
    encoder.encode(pieces[-1])  # warm-up
    with ThreadPoolExecutor(cpus) as pool:
        cpu, wall, steal = time.process_time(), time.perf_counter(), steal_seconds()
        list(pool.map(encoder.encode, pieces))
        wall, cpu, steal = time.perf_counter() - wall, time.process_time() - cpu, steal_seconds() - steal
    return {"encoder": spec, "texts": len(texts), "workers": cpus, "texts_per_s": len(texts) / wall,
            "cpu_ms_per_text": 1000.0 * cpu / len(texts), "cpus_busy": cpu / wall, "steal_seconds": round(steal, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--writes", default="none,one,inbox")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--model", default="minilm", help="encoder for the model-only ceiling ('' to skip)")
    parser.add_argument("--output", default="stack_floor")
    args = parser.parse_args()
    settings = CommonSettings()
    variants = [w.strip() for w in args.writes.split(",") if w.strip()]
    runs = []
    for repeat in range(args.repeats):  # variants alternate, so a slow stretch of the machine hits both
        for writes in variants:
            result = run(writes, args.items, settings, args.timeout)
            result["repeat"] = repeat
            runs.append(result)
            print(f"{writes:>5} #{repeat}: {result['ingest_to_routed_items_per_s']:,.0f} items/s to routed, "
                  f"{result['cpu_ms_per_item']['total']:.2f} CPU-ms/item {result['cpu_ms_per_item']}", flush=True)
    summary = {}
    for writes in variants:
        mine = [r for r in runs if r["writes"] == writes]
        summary[writes] = {
            "ingest_to_routed_items_per_s_median": statistics.median(r["ingest_to_routed_items_per_s"] for r in mine),
            "all_consumed_items_per_s_median": statistics.median(r["all_consumed_items_per_s"] for r in mine),
            "cpu_ms_per_item_median": {k: statistics.median(r["cpu_ms_per_item"][k] for r in mine)
                                       for k in mine[0]["cpu_ms_per_item"]},
        }
    cpus = len(os.sched_getaffinity(0))
    model = None
    if args.model:
        texts = [row.text for row in load("train")[:args.items]]
        model = model_cost(args.model, texts)
        # Goal (b) on these CPUs: the model's CPU per text plus each floor's CPU per item, packed perfectly.
        for s in summary.values():
            ceiling = cpu_bound_ceiling(cpus, model["cpu_ms_per_text"], s["cpu_ms_per_item_median"]["total"],
                                        model["texts_per_s"])
            s["model_pipeline_ceiling_items_per_s"] = ceiling
            s["model_pipeline_ceiling_share"] = ceiling / model["texts_per_s"]
        print(f"model only ({args.model}): {model['texts_per_s']:,.0f} texts/s, {model['cpu_ms_per_text']:.2f} "
              f"CPU-ms per text, {model['cpus_busy']:.2f} CPUs busy")
    payload = {"benchmark": "stack_floor", "environment": environment(), "settings": vars(args),
               "cpus": cpus, "budget_cpu_ms_per_item_at_1000_per_s": 1000.0 * cpus / 1000.0,
               "model_only": model, "summary": summary, "runs": runs}
    path = write_result(args.output, payload)
    print(table(["writes", "items/s to routed (median)", "items/s all consumed", "CPU-ms/item total",
                 "stand-ins", "kafka", "ferretdb", "model ceiling share"],
                [[w, round(s["ingest_to_routed_items_per_s_median"]), round(s["all_consumed_items_per_s_median"]),
                  s["cpu_ms_per_item_median"]["total"], s["cpu_ms_per_item_median"]["stand_ins"],
                  s["cpu_ms_per_item_median"].get("kafka"), s["cpu_ms_per_item_median"].get("ferretdb"),
                  f"{s['model_pipeline_ceiling_share']:.1%}" if "model_pipeline_ceiling_share" in s else "-"]
                 for w, s in summary.items()]))
    print(f"budget at 1,000 items/s on {cpus} CPUs: {1000.0 * cpus / 1000.0:.1f} CPU-ms per item; wrote {path}")


if __name__ == "__main__":
    main()
