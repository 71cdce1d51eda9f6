"""The floor under bench/lease_path.py: the fewest database commands a lease+submit cycle can take, timed alone.

Any correct claim needs at least one atomic write that decides it (here: the item marker and the slot, which
carries the lease, in one ordered insert of unique `_id`s) and a submission at least one more (the lease
finished); a lease must read its task and a submission its lease. So a cycle is at least 2 writes, and with
the 2 reads 4 commands. This bench runs exactly those commands from 50 concurrent coroutines on one
AsyncMongoClient (as one gateway replica would), against the running FerretDB, with no gRPC, no Kafka and no
gateway code at all, and records cycles/s and the CPU each side spent per cycle:

- `writes_only`: the 2 writes per cycle (insert_many of 2 documents, update_one by `_id`);
- `writes_and_reads`: the same plus find_one of the task and of the lease by `_id` (4 commands);
- `single_commands`: each kind of command alone, per second and FerretDB CPU-ms per command.

The gateway then adds its own Python per command (pymongo's encoding and the event loop; about as much CPU as
FerretDB spends: bench/lease_path.py's cpu_seconds), gRPC per RPC, and the publish to Kafka; they share the
same 2 cores. Writes bench/results/lease_floor.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

try:
    from bench._common import cpu_seconds, environment, infra_pids, table, write_result
except ImportError:  # run as `python bench/lease_floor.py`
    from _common import cpu_seconds, environment, infra_pids, table, write_result

from pymongo import AsyncMongoClient  # noqa: E402

from labelmesh.runtime.settings import CommonSettings  # noqa: E402

TASKS = 10_000


async def _measure(name: str, client: AsyncMongoClient, cycle, workers: int, seconds: float) -> dict:
    infra = infra_pids()
    before = {k: cpu_seconds(v) for k, v in infra.items()}
    own_before = time.process_time()
    done = 0
    stop_at = time.monotonic() + seconds

    async def worker(n: int) -> None:
        nonlocal done
        i = 0
        while time.monotonic() < stop_at:
            await cycle(n, i)
            i += 1
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(workers)))
    wall = time.monotonic() - started
    cpu = {k: cpu_seconds(v) - before[k] for k, v in infra.items()}
    cpu["client"] = time.process_time() - own_before
    return {"name": name, "workers": workers, "seconds": round(wall, 1), "cycles": done,
            "cycles_per_s": round(done / wall, 1),
            "cpu_ms_per_cycle": {k: round(v * 1000 / max(done, 1), 3) for k, v in cpu.items()},
            "load_average_1m_after": round(os.getloadavg()[0], 2)}


async def run(workers: int, seconds: float) -> dict:
    base = CommonSettings()
    client = AsyncMongoClient(base.mongo_uri, tz_aware=True)
    name = f"benchfloor{uuid.uuid4().hex[:8]}"
    db = client[name]
    try:
        tasks, claims, leases = db["tasks"], db["claims"], db["leases"]
        await tasks.insert_many([{"_id": f"t{n:05d}", "status": "open", "prelabel": [{"label": "yes", "probability": 0.5}],
                                  "text": f"text {n}", "required": 1} for n in range(TASKS)])
        await leases.insert_one({"_id": "seed"})
        runs = []
        tag = uuid.uuid4().hex[:6]

        async def writes(n: int, i: int, read: bool = False) -> None:
            task = f"t{(n * 7919 + i) % TASKS:05d}"
            key = f"{tag}{read}-{n}-{i}"
            if read:
                await tasks.find_one({"_id": task})
            await claims.insert_many([{"_id": f"{key}@a", "task_id": task},
                                      {"_id": f"{key}#0", "task_id": task, "state": "leased"}], ordered=True)
            if read:
                await claims.find_one({"_id": f"{key}#0"})
            await claims.update_one({"_id": f"{key}#0"}, {"$set": {"state": "submitted"}})

        runs.append(await _measure("writes_only", client, writes, workers, seconds))

        async def writes_and_reads(n: int, i: int) -> None:
            await writes(n, i, read=True)

        runs.append(await _measure("writes_and_reads", client, writes_and_reads, workers, seconds))
        singles = {}
        for kind in ("insert_one", "find_one", "update_one"):
            async def one(n: int, i: int, kind: str = kind) -> None:
                key = f"{tag}{kind}-{n}-{i}"
                if kind == "insert_one":
                    await leases.insert_one({"_id": key, "state": "leased"})
                elif kind == "find_one":
                    await tasks.find_one({"_id": f"t{(n * 7919 + i) % TASKS:05d}"})
                else:
                    await tasks.update_one({"_id": f"t{(n * 7919 + i) % TASKS:05d}"}, {"$set": {"seen": i}})
            singles[kind] = await _measure(kind, client, one, workers, seconds / 2)
        return {"environment": environment(), "runs": runs, "single_commands": singles}
    finally:
        await client.drop_database(name)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--output", default="lease_floor")
    args = parser.parse_args()
    payload = asyncio.run(run(args.workers, args.seconds))
    path = write_result(args.output, payload)
    rows = [[r["name"], r["cycles_per_s"], r["cpu_ms_per_cycle"].get("ferretdb"), r["cpu_ms_per_cycle"]["client"]]
            for r in [*payload["runs"], *payload["single_commands"].values()]]
    print(table(["run", "per s", "FerretDB CPU ms each", "client CPU ms each"], rows))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
