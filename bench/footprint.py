"""What a running stack keeps only for a while, sampled through a bench run: the documents each service prunes
(its inbox, in-flight records, outbox and qc's evidence rows) and each process's resident memory. Issue 21 item 4
asks that both stay bounded over a long run; bench/pipeline_throughput.py records them on its load run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

# Collections that a service keeps only for a retention window, or until they are relayed. A name that a service
# does not have counts 0.
PRUNED = ("processed_events", "inflight_events", "outbox", "outbox_claims", "evidence")


def rss_mb(pid: int) -> float | None:
    """The process's resident memory now (VmRSS), or None once it is gone."""
    try:
        line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None
    return round(int(line.split()[1]) / 1024, 1)


async def sample(client: Any, namespace: str, services: Iterable[str], pids: Mapping[str, int],
                 started: float) -> dict[str, Any]:
    """One sample: seconds since `started`, documents per service database and collection, RSS per process."""
    documents = {}
    for service in services:
        db = client[f"{namespace}_{service}"]
        names = set(await db.list_collection_names())
        documents[service] = {c: await db[c].estimated_document_count() for c in PRUNED if c in names}
    return {"t_s": round(time.monotonic() - started, 1), "documents": documents,
            "rss_mb": {name: mb for name, pid in pids.items() if (mb := rss_mb(pid)) is not None}}


async def follow(client: Any, namespace: str, services: Iterable[str], pids: Callable[[], Mapping[str, int]],
                 every_s: float, stop: asyncio.Event, out: list[dict[str, Any]]) -> None:
    """Sample every `every_s` until `stop` is set, and once more then."""
    services, started = list(services), time.monotonic()
    while True:
        try:
            out.append(await sample(client, namespace, services, pids(), started))
        except Exception as exc:  # noqa: BLE001 - a missed sample is recorded, the run goes on
            out.append({"t_s": round(time.monotonic() - started, 1), "error": repr(exc)[:300]})
        if stop.is_set():
            return
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass


def summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Per service and collection, the most documents seen and the last count; per process, the most and the last
    resident memory. Bounded means the last is well below the peak once the run has outlived the window."""
    good = [s for s in samples if "documents" in s]
    docs: dict[str, dict[str, dict[str, int]]] = {}
    rss: dict[str, dict[str, float]] = {}
    for s in good:
        for service, counts in s["documents"].items():
            for name, n in counts.items():
                entry = docs.setdefault(service, {}).setdefault(name, {"peak": 0, "last": 0})
                entry["peak"], entry["last"] = max(entry["peak"], n), n
        for name, mb in s["rss_mb"].items():
            entry_mb = rss.setdefault(name, {"peak": 0.0, "last": 0.0})
            entry_mb["peak"], entry_mb["last"] = max(entry_mb["peak"], mb), mb
    return {"samples": len(good), "missed": len(samples) - len(good),
            "seconds": good[-1]["t_s"] if good else 0.0, "documents": docs, "rss_mb": rss}
