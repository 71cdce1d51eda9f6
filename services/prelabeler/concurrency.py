"""How the prelabeler spreads embedding over the machine: chunks embedded at once, torch threads per chunk."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EncodePlan:
    workers: int  # chunks embedded at the same time
    threads: int  # torch intra-op threads (CPU only)


def encode_plan(device: str, cpus: int, workers: int = 0) -> EncodePlan:
    """workers=0 picks: one chunk per CPU with one thread each on CPU, one chunk at a time on a GPU (its own
    parallelism serves one forward pass; a second would only queue behind it). An explicit workers count
    shares the CPUs among them."""
    cpus = max(1, cpus)
    if device.startswith("cuda"):
        return EncodePlan(workers=max(1, workers or 1), threads=cpus)
    chosen = max(1, workers or cpus)
    return EncodePlan(workers=chosen, threads=max(1, cpus // chosen))
