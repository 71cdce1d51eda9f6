"""What one gateway replica spends on the open-task index's broadcast: CPU-ms per item.routed, as a burst brings them.

    python bench/hint_broadcast.py [--items 3000] [--rate 550] [--repeats 3]

Needs Kafka up (`bash deploy/local/up.sh`). Every gateway replica reads every item.routed (services/gateway/app.py,
the hints subscription) whichever partitions it owns, so this cost is paid once per replica (issue 19). For each
variant, a fresh set of topics, a producer process sending the items at a burst's rate (bench/replica_cost.py
routed 505-612 items/s), and in this process the bus's broadcast subscription with the gateway's hint handler;
this process's CPU from the first batch to the last item, per item:
- `whole`: each record validated as the whole ItemRouted (as before the projection);
- `projection`: services/gateway/hints.py's lean projection;
- `projection+fetch`: the projection with the hint subscription's fetch minimum (what the gateway runs).
Also a micro-timing of review_priority (plain Python) against top_k_informativeness (numpy), which it replaced in
the index's path. The items look like a bench's: 5 top-k scores, 5 neighbours, ~1.3 KB of JSON each.

Results (bench/results/hint_broadcast.json, 2026-12-08 03:54, 3,000 items at 550/s, medians of 3, load average
13 from other work on this 2-core machine): whole 0.139 CPU-ms per item, projection 0.118, projection+fetch 0.043;
review_priority 1.9 us per call against 19 us for numpy's margin, so before this work (whole event, numpy
priority) each replica paid ~0.156 CPU-ms per routed item, and now 0.043.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import environment, table, write_result  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from labelmesh.infra import create_topics  # noqa: E402
from labelmesh.ml.active import review_priority, top_k_informativeness  # noqa: E402
from labelmesh.runtime.bus import EventBus  # noqa: E402
from labelmesh.runtime.settings import CommonSettings  # noqa: E402
from schemas.events import ItemRouted, LabelScore, Neighbour, Thresholds, Tier  # noqa: E402
from services.gateway.domain import SERVICE  # noqa: E402
from services.gateway.domain.candidates import OpenTasks  # noqa: E402
from services.gateway.handlers import HINT_TOPICS, GatewayHandlers  # noqa: E402
from services.gateway.hints import FETCH_MAX_WAIT_MS, FETCH_MIN_BYTES, PROJECTION  # noqa: E402
from services.gateway.queue import TaskQueue  # noqa: E402

VARIANTS = ("whole", "projection", "projection+fetch")


def items(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    labels = [f"intent_{k}" for k in range(77)]
    out = []
    for i in range(n):
        probs = sorted((rng.random() for _ in range(5)), reverse=True)
        total = sum(probs) * rng.uniform(1.0, 1.6)
        event = ItemRouted(
            producer="router", project="bench", item_id=f"train-{i}", correlation_id=os.urandom(16).hex(),
            tier=rng.choice([Tier.SINGLE, Tier.SINGLE, Tier.EXPERT, Tier.MULTI]),
            required_annotators=rng.choice([1, 3]),
            model_version=1, top_k=tuple(LabelScore(label=rng.choice(labels), probability=p / total) for p in probs),
            neighbours=tuple(Neighbour(item_id=f"train-{rng.randrange(10_000)}", label=rng.choice(labels),
                                       similarity=rng.uniform(0.2, 0.9)) for _ in range(5)),
            thresholds=Thresholds(auto_accept=1.0, single_review=0.7), reasons=("confidence below single_review",))
        out.append(event.model_dump_json().encode())
    return out


async def produce(topic: str, rate: float, n: int, seed: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=CommonSettings().kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        values = items(n, seed)
        for at in range(0, n, 50):
            for value in values[at:at + 50]:
                await producer.send(topic, value, key=value[:40])
            await asyncio.sleep(50 / rate)
        await producer.flush()
    finally:
        await producer.stop()


async def one_run(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    base = CommonSettings()
    prefix = f"benchhints{time.time_ns()}."
    await create_topics(base.kafka_bootstrap, prefix)
    settings = base.model_copy(update={"topic_prefix": prefix, "namespace": prefix[:-1]})
    bus = EventBus(settings, SERVICE, CollectorRegistry())
    queue = TaskQueue.__new__(TaskQueue)  # only its index: hear() touches nothing else
    queue.hints = OpenTasks()
    handlers = GatewayHandlers(SimpleNamespace(queue=queue), None)  # type: ignore[arg-type]
    seen: list[int] = [0]
    first: list[float] = []
    done = asyncio.Event()

    async def on_whole(events: list[Any]) -> None:  # the handler as it was before the projection
        for event in events:
            if isinstance(event, ItemRouted):
                queue.hear(event)

    async def handle(events: list[Any]) -> None:
        if not first:
            first.append(time.process_time())
        await (on_whole(events) if variant == "whole" else handlers.on_hints(events))
        seen[0] += len(events)
        if seen[0] >= args.items:
            done.set()

    options: dict[str, Any] = {}
    if variant != "whole":
        options["projection"] = PROJECTION
    if variant == "projection+fetch":
        options.update(fetch_min_bytes=FETCH_MIN_BYTES, fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    bus.subscribe(list(HINT_TOPICS), handle, name=f"{SERVICE}.hints", broadcast=True, **options)
    await bus.broker.start()
    try:
        await asyncio.sleep(2.0)  # partitions assigned before the first item is sent
        producer = subprocess.Popen([sys.executable, __file__, "--produce", prefix + ItemRouted.TOPIC,
                                     "--rate", str(args.rate), "--items", str(args.items), "--seed", str(args.seed)])
        started = time.perf_counter()
        await asyncio.wait_for(done.wait(), 300)
        cpu = time.process_time() - first[0]
        wall = time.perf_counter() - started
        producer.wait(60)
    finally:
        await bus.broker.stop()
    return {"variant": variant, "items": seen[0], "cpu_s": round(cpu, 4), "wall_s": round(wall, 2),
            "cpu_ms_per_item": round(1e3 * cpu / seen[0], 4), "index_tasks": len(queue.hints)}


def priority_micro(n: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    rows = [[rng.random() / 5 for _ in range(5)] for _ in range(n)]
    timings = {}
    for name, fn in (("review_priority_us", lambda r: review_priority(r)),
                     ("numpy_top_k_margin_us", lambda r: top_k_informativeness(r, max(2, len(r)), "margin"))):
        started = time.process_time()
        for row in rows:
            fn(row)
        timings[name] = round(1e6 * (time.process_time() - started) / n, 2)
    return timings


async def main_async(args: argparse.Namespace) -> None:
    load_before = os.getloadavg()
    runs = []
    for _ in range(args.repeats):
        for variant in VARIANTS:
            runs.append(await one_run(variant, args))
            print(runs[-1], flush=True)
    medians = {v: statistics.median(r["cpu_ms_per_item"] for r in runs if r["variant"] == v) for v in VARIANTS}
    payload = {"benchmark": "hint_broadcast", "environment": environment(), "settings": vars(args),
               "load_average_before_after": [load_before, os.getloadavg()],
               "cpu_ms_per_item_median": medians, "priority_micro": priority_micro(20_000, args.seed), "runs": runs}
    path = write_result("hint_broadcast", payload)
    print(table(["variant", "CPU-ms per item.routed (median)"], [[v, medians[v]] for v in VARIANTS]))
    print(payload["priority_micro"])
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--rate", type=float, default=550.0, help="item.routed per second, as in a burst")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--produce", metavar="TOPIC", help=argparse.SUPPRESS)  # the producer process
    args = ap.parse_args()
    if args.produce:
        asyncio.run(produce(args.produce, args.rate, args.items, args.seed))
    else:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
