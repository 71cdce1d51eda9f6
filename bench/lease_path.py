"""Lease path: 50 annotators leasing and submitting as fast as they can against 10,000 open tasks, 1 and 2 replicas.

Each run starts its gateway replicas as processes on a fresh namespace of the running Kafka and FerretDB,
configures a project, creates the annotators, ingests the items and publishes their item.routed decisions
(as the router would; half single, half multi with 3 annotators), waits until every replica's index holds
every task, then lets the annotators loop LeaseTask + SubmitLabel for --seconds, each spreading its calls
over the replicas. It records cycles/s and lease and submit p50/p99, and ghz's figures for a single RPC
(LeaseTask re-polled by annotators who hold a lease: the read path every annotation tool polls).

Results (bench/results/lease_path.json, 2026-12-07 13:55-13:57, one run each, --no-ghz, 2 cores, load average
1.2-4.0 with other work): 1 replica 82.1 cycles/s, lease p50/p99 232/739 ms, submit 344/661 ms; 2 replicas 56.9
cycles/s, lease 372/1,794 ms, submit 449/947 ms; no errors. Twenty minutes earlier, before SubmitLabel wrote its
outbox record (an insert before finishing the lease and a delete once published, so a crash between store and
publish is relayed without a client retry): 112.7 and 69.0 cycles/s, lease p99 595 ms at 1 replica. Before the
lease path was cut from ~26 to ~9 database commands per cycle (2026-12-05): 35.0 and 27.5 cycles/s. The goal (200
cycles/s, lease p99 <= 100 ms) is not met, and cannot be on these 2 cores with FerretDB: in the run without the
outbox FerretDB spent 7.6 CPU-ms per cycle (25.95 CPU-s / 3,414 cycles) and the gateway 6.2 (21.21 / 3,414),
13.8 CPU-ms in all, so the two cores carried at most ~145 cycles/s with nothing else running. A second replica
splits the gateway's CPU without adding cores, and adds cross-replica claim races. On MongoDB a command by `_id`
costs a fraction of FerretDB's.

Writes bench/results/lease_path.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

try:
    from bench._common import REPO, cpu_seconds, environment, infra_pids, table, write_result
except ImportError:  # run as `python bench/lease_path.py`
    from _common import REPO, cpu_seconds, environment, infra_pids, table, write_result

from pymongo import AsyncMongoClient  # noqa: E402

from labelmesh.client import GatewayClient  # noqa: E402
from labelmesh.infra import create_topics  # noqa: E402
from labelmesh.runtime.settings import CommonSettings  # noqa: E402
from labelmesh.stack import ServiceProcess  # noqa: E402
from schemas.events import ItemRouted, LabelScore, Thresholds, Tier  # noqa: E402
from schemas.rpc import gateway_pb2 as pb  # noqa: E402

PROJECT = "lease"
LABELS = ["yes", "no", "maybe"]
ADMIN = "bench-admin"
INGEST_BATCH = 5_000


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gauge(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    return next((float(line.split()[1]) for line in text.splitlines() if line.startswith(name + " ")), None)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _publish(bootstrap: str, prefix: str, events: list[ItemRouted]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        futures = [await producer.send(prefix + e.TOPIC, e.model_dump_json().encode(), key=e.key.encode())
                   for e in events]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def run(replicas: int, tasks: int, annotators: int, seconds: float, ghz: str | None, log_dir: Path) -> dict:
    base = CommonSettings()
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    prefix = f"{namespace}."
    await create_topics(base.kafka_bootstrap, prefix)
    env = {**os.environ, "LABELMESH_KAFKA_BOOTSTRAP": base.kafka_bootstrap, "LABELMESH_MONGO_URI": base.mongo_uri,
           "LABELMESH_NAMESPACE": namespace, "LABELMESH_TOPIC_PREFIX": prefix, "LABELMESH_GATEWAY_ADMIN_TOKEN": ADMIN,
           "LABELMESH_GATEWAY_GOLDEN_RATE": "0", "LABELMESH_GATEWAY_GOLDEN_SALT": uuid.uuid4().hex}
    processes, targets = [], []
    for n in range(replicas):
        grpc_port, http_port = _free_port(), _free_port()
        process = ServiceProcess("gateway", http_port, log_dir / f"gateway-{replicas}-{n}.log")
        process.start({**env, "LABELMESH_GATEWAY_GRPC_PORT": str(grpc_port), "LABELMESH_GATEWAY_HTTP_PORT": str(http_port)})
        processes.append(process)
        targets.append(f"127.0.0.1:{grpc_port}")
    admins = [GatewayClient(t, ADMIN) for t in targets]
    mongo = AsyncMongoClient(base.mongo_uri, tz_aware=True)
    try:
        while not all(p.ready() for p in processes):
            if exited := [p.log_path for p in processes if not p.running]:
                raise SystemExit(f"a gateway exited before it was ready; see {', '.join(map(str, exited))}")
            await asyncio.sleep(0.5)
        await admins[0].configure_project(PROJECT, LABELS, guidelines="bench")
        tokens = [await admins[0].create_annotator(f"b{i:03d}") for i in range(annotators)]
        items = [f"i{n:05d}" for n in range(tasks)]
        for start in range(0, tasks, INGEST_BATCH):
            await admins[0].ingest_items([pb.IngestItem(project=PROJECT, item_id=i, text=f"text {i}")
                                          for i in items[start:start + INGEST_BATCH]])
        multi = lambda n: n % 2 == 1  # noqa: E731
        await _publish(base.kafka_bootstrap, prefix, [
            ItemRouted(producer="bench", project=PROJECT, item_id=i, tier=Tier.MULTI if multi(n) else Tier.SINGLE,
                       required_annotators=3 if multi(n) else 1, thresholds=Thresholds(),
                       top_k=(LabelScore(label="yes", probability=0.4 + (n % 97) / 200),))
            for n, i in enumerate(items)])
        loaded = time.monotonic()
        while not all(_gauge(p.port, "labelmesh_gateway_candidate_tasks") == tasks for p in processes):
            await asyncio.sleep(0.5)
        db = mongo[f"{namespace}_gateway"]
        while await db["tasks"].count_documents({"status": "open"}) < tasks:
            await asyncio.sleep(0.5)
        setup_s = time.monotonic() - loaded

        leases: list[float] = []
        submits: list[float] = []
        errors: list[str] = []
        stop_at = time.monotonic() + seconds
        cpu_before = {p.process.pid: cpu_seconds(p.process.pid) for p in processes}
        infra = infra_pids()
        infra_before = {k: cpu_seconds(v) for k, v in infra.items()}

        async def annotator(n: int) -> None:
            clients = [admins[(n + r) % replicas].as_user(tokens[n]) for r in range(replicas)]
            turn = 0
            while time.monotonic() < stop_at:
                client = clients[turn % replicas]
                turn += 1
                try:
                    t0 = time.perf_counter()
                    task = await client.lease(PROJECT)
                    t1 = time.perf_counter()
                    if task is None:
                        errors.append("no task")
                        return
                    await client.submit(task.task_id, "yes", key=f"{n}-{task.task_id}")
                    t2 = time.perf_counter()
                except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
                    errors.append(repr(exc)[:200])
                    continue
                leases.append(t1 - t0)
                submits.append(t2 - t1)

        started, client_cpu = time.monotonic(), time.process_time()
        await asyncio.gather(*(annotator(n) for n in range(annotators)))
        wall = time.monotonic() - started
        cpu = {f"gateway-{i}": round(cpu_seconds(p.process.pid) - cpu_before[p.process.pid], 2)
               for i, p in enumerate(processes)}
        cpu |= {k: round(cpu_seconds(v) - infra_before[k], 2) for k, v in infra.items()}
        cpu["bench_clients"] = round(time.process_time() - client_cpu, 2)  # the 50 annotators' gRPC calls
        load = os.getloadavg()[0]
        result = {
            "replicas": replicas, "open_tasks": tasks, "annotators": annotators, "seconds": round(wall, 1),
            "setup_seconds": round(setup_s, 1), "cycles": len(leases), "cycles_per_s": round(len(leases) / wall, 1),
            "lease_p50_ms": round(statistics.median(leases) * 1000, 1) if leases else None,
            "lease_p99_ms": round(_pct(leases, 0.99) * 1000, 1) if leases else None,
            "submit_p50_ms": round(statistics.median(submits) * 1000, 1) if submits else None,
            "submit_p99_ms": round(_pct(submits, 0.99) * 1000, 1) if submits else None,
            "errors": len(errors), "error_examples": sorted(set(errors))[:5], "cpu_seconds": cpu,
            "load_average_1m_after": round(load, 2),
        }
        if ghz:
            result["ghz_lease_repoll"] = _ghz(ghz, targets[0], tokens[0])
        return result
    finally:
        for client in admins:
            await client.close()
        await mongo.close()
        for process in processes:
            process.stop()


def _ghz(binary: str, target: str, token: str) -> dict:
    """ghz against LeaseTask by an annotator who holds a lease, with the contract's .proto."""
    out = subprocess.run(
        [binary, "--insecure", "--proto", str(REPO / "schemas/rpc/gateway.proto"),
         "--import-paths", str(REPO / "schemas/rpc"), "--call", "labelmesh.v1.AnnotationService/LeaseTask",
         "-d", json.dumps({"project": PROJECT}), "-m", json.dumps({"authorization": f"Bearer {token}"}),
         "-c", "20", "-n", "2000", "-O", "json", target],
        capture_output=True, text=True, timeout=300,
    )
    if out.returncode != 0:
        return {"error": out.stderr[-500:]}
    report = json.loads(out.stdout)
    lat = {d["percentage"]: d["latency"] / 1e6 for d in report.get("latencyDistribution") or []}
    return {"rps": round(report["rps"], 1), "p50_ms": round(lat.get(50, float("nan")), 1),
            "p99_ms": round(lat.get(99, float("nan")), 1), "count": report["count"],
            "status": report.get("statusCodeDistribution")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-ghz", action="store_true", help="skip the single-RPC run (needs Go to build ghz)")
    parser.add_argument("--output", default="lease_path")
    args = parser.parse_args()
    ghz = None
    if not args.no_ghz:
        ghz = subprocess.run([str(REPO / "deploy/local/ghz.sh")], capture_output=True, text=True,
                             check=True).stdout.strip()
    runs = []
    with tempfile.TemporaryDirectory() as logs:
        for replicas in args.replicas:
            runs.append(asyncio.run(run(replicas, args.tasks, args.annotators, args.seconds, ghz, Path(logs))))
            print(json.dumps(runs[-1]), file=sys.stderr)
    payload = {"environment": environment(), "goal": {"cycles_per_s": 200, "lease_p99_ms": 100}, "runs": runs}
    path = write_result(args.output, payload)
    print(table(["replicas", "cycles/s", "lease p50 ms", "lease p99 ms", "submit p50 ms", "submit p99 ms", "errors"],
                [[r["replicas"], r["cycles_per_s"], r["lease_p50_ms"], r["lease_p99_ms"], r["submit_p50_ms"],
                  r["submit_p99_ms"], r["errors"]] for r in runs]))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
