"""Pure helpers for the pipeline throughput bench: per-item Kafka timestamps, latency pairing, percentiles, rates."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np


def first_timestamps(records: Iterable[tuple[str, int]], wanted: set[str] | None = None) -> dict[str, int]:
    """Earliest timestamp (ms) per item id from (item_id, timestamp_ms) pairs; a re-route or redelivery
    later in the stream does not move an item's first arrival. Items outside `wanted` are ignored."""
    first: dict[str, int] = {}
    for item_id, ts in records:
        if wanted is not None and item_id not in wanted:
            continue
        if item_id not in first or ts < first[item_id]:
            first[item_id] = ts
    return first


def latencies_ms(start: Mapping[str, int], end: Mapping[str, int]) -> dict[str, int]:
    """end - start per item present in both (an item missing an end has no latency yet)."""
    return {item: end[item] - start[item] for item in start.keys() & end.keys()}


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100, linear interpolation), or None for no values."""
    array = np.asarray(list(values), dtype=np.float64)
    return float(np.percentile(array, q)) if array.size else None


@dataclass(frozen=True)
class StageStats:
    """One stage (e.g. ingest -> item.routed) of one run: how many arrived, how fast, how late."""

    items: int
    arrived: int
    items_per_s: float | None
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def rate(count: int, first_ms: float | None, last_ms: float | None) -> float | None:
    """count / (last - first) in items per second; None when the window is empty or unknown."""
    if count == 0 or first_ms is None or last_ms is None or last_ms <= first_ms:
        return None
    return count / ((last_ms - first_ms) / 1000.0)


def stage_stats(start: Mapping[str, int], end: Mapping[str, int], items: Iterable[str],
                window_start_ms: float | None = None) -> StageStats:
    """Latency percentiles over the given items, and throughput = arrived items / (last arrival - window start).

    The window starts at `window_start_ms` (e.g. when the client sent the first item) or else at the
    earliest start timestamp, so a rate includes the time to fill the pipeline, not only its steady state.
    """
    wanted = set(items)
    lat = latencies_ms({k: v for k, v in start.items() if k in wanted}, end)
    arrived = [end[k] for k in lat]
    begin = window_start_ms if window_start_ms is not None else (min(start[k] for k in wanted if k in start)
                                                                  if any(k in start for k in wanted) else None)
    values = list(lat.values())
    return StageStats(
        items=len(wanted),
        arrived=len(lat),
        items_per_s=rate(len(lat), begin, max(arrived) if arrived else None),
        p50_ms=percentile(values, 50),
        p99_ms=percentile(values, 99),
        max_ms=float(max(values)) if values else None,
    )


def by_group(start: Mapping[str, int], end: Mapping[str, int], group_of: Mapping[str, str]) -> dict[str, StageStats]:
    """stage_stats per group (e.g. per routing tier); latencies only, the rate is over each group's own items."""
    groups: dict[str, list[str]] = {}
    for item, group in group_of.items():
        groups.setdefault(group, []).append(item)
    return {group: stage_stats(start, end, members) for group, members in sorted(groups.items())}


def cpu_bound_ceiling(cpus: int, model_cpu_ms: float, other_cpu_ms: float, model_items_per_s: float) -> float:
    """The most items/s a pipeline can reach on `cpus` CPUs that it shares with its model, if every item costs
    the model's CPU-ms plus `other_cpu_ms` and the CPUs are kept fully busy (a bound no real run beats): the
    CPU time per second divided by the CPU time per item, and never above the model's own rate."""
    if cpus <= 0 or model_cpu_ms + other_cpu_ms <= 0:
        raise ValueError("need CPUs and a positive cost per item")
    return min(model_items_per_s, cpus * 1000.0 / (model_cpu_ms + other_cpu_ms))


def rebuild_ceiling(cpus: int, cpu_ms_per_item: Mapping[str, float],
                    one_thread: tuple[str, ...] = ("service_process",)) -> tuple[float, str]:
    """The most items/s a rebuild can reach on `cpus` free CPUs at the measured CPU-ms per item of each process,
    and what sets it: "all processes" (their CPU time per item together fills the CPUs) or a process in
    `one_thread` (it does its work on one thread, such as a service's event loop, so it cannot pass one CPU's
    time per item however many CPUs are free). A bound no real run beats."""
    total = sum(cpu_ms_per_item.values())
    if cpus <= 0 or total <= 0:
        raise ValueError("need CPUs and a positive cost per item")
    bounds = {"all processes": cpus * 1000.0 / total}
    bounds |= {name: 1000.0 / cpu_ms_per_item[name] for name in one_thread if cpu_ms_per_item.get(name, 0) > 0}
    limit = min(bounds, key=bounds.__getitem__)
    return bounds[limit], limit
