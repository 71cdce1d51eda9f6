"""How long `labelmesh replay` takes to rebuild the router from its topics, and whether the state comes back equal.

    python bench/replay.py [--items 3000] [--dim 384]

Needs the real Kafka and FerretDB (deploy/local/up.sh). Publishes `--items` pre-labelled items to a fresh
namespace, runs the router until its lag is 0 (first build), stops it, runs the replay (drop + rewind),
starts it again until its lag is 0 (rebuild), and compares the canonical digests of its database.
Writes bench/results/replay.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid

import numpy as np
from _common import environment, write_result
from aiokafka import AIOKafkaProducer

from labelmesh.infra import create_topics
from labelmesh.replay import consumer_lag, replay_service
from labelmesh.state_digest import database_digest
from schemas.events import ItemPrelabeled, LabelScore, ProjectConfigured
from services.router.app import create_app
from services.router.settings import RouterSettings

LABELS = tuple(f"label{i}" for i in range(20))


async def publish(settings: RouterSettings, items: int, dim: int) -> None:
    rng = np.random.default_rng(0)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=20,
                                max_request_size=16 * 1024 * 1024)
    await producer.start()
    try:
        config = ProjectConfigured(producer="bench", project="bench", labels=LABELS, guideline_version=1)
        await producer.send_and_wait(settings.topic(config.TOPIC), config.model_dump_json().encode(), key=b"bench")
        pending = []
        for i in range(items):
            v = rng.normal(size=dim)
            p = float(rng.uniform(0.2, 1.0))
            event = ItemPrelabeled(producer="bench", project="bench", item_id=f"i{i}", model_version=1,
                                   encoder=f"bench-{dim}", embedding=tuple(np.round(v / np.linalg.norm(v), 6).tolist()),
                                   top_k=(LabelScore(label=LABELS[i % 20], probability=p),
                                          LabelScore(label=LABELS[(i + 1) % 20], probability=(1 - p) / 2)))
            pending.append(await producer.send(settings.topic(event.TOPIC), event.model_dump_json().encode(),
                                               key=event.key.encode()))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def until_caught_up(settings: RouterSettings) -> float:
    groups = {settings.consumer_group("router"): ["item.prelabeled"],
              settings.consumer_group("router.projects"): ["project.configured"]}
    started = time.perf_counter()
    while True:
        lag = await consumer_lag(settings, "router", groups)
        if groups.keys() <= lag.keys() and not any(lag.values()):
            return time.perf_counter() - started
        await asyncio.sleep(0.25)


async def run(items: int, dim: int) -> dict:
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    settings = RouterSettings(namespace=namespace, topic_prefix=f"{namespace}.", http_port=0)
    await create_topics(settings.kafka_bootstrap, settings.topic_prefix)
    await publish(settings, items, dim)
    print(f"published {items} items to {namespace}", file=sys.stderr, flush=True)

    runtime = create_app(settings)
    await runtime.start()
    first_s = await until_caught_up(settings)
    print(f"first build: {first_s:.1f}s", file=sys.stderr, flush=True)
    before = await database_digest(runtime.db)
    await runtime.stop()

    started = time.perf_counter()
    report = await replay_service(settings, "router")
    replay_s = time.perf_counter() - started

    runtime = create_app(settings)
    await runtime.start()
    rebuild_s = await until_caught_up(settings)
    after = await database_digest(runtime.db)
    await runtime.stop()
    return {
        "bench": "replay", "service": "router", "items": items, "embedding_dim": dim, "namespace": namespace,
        "first_build_s": round(first_s, 2), "first_build_items_per_s": round(items / first_s, 1),
        "replay_command_s": round(replay_s, 2), "collections_dropped": report.dropped,
        "rebuild_s": round(rebuild_s, 2), "rebuild_items_per_s": round(items / rebuild_s, 1),
        "state_equal_after_rebuild": before == after, "digest": before,
        "environment": environment(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--dim", type=int, default=384)
    args = parser.parse_args()
    result = asyncio.run(run(args.items, args.dim))
    path = write_result("replay", result)
    print(path.read_text())


if __name__ == "__main__":
    main()
