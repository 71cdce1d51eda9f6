"""Shared bench helpers: BANKING77 loading, cached embeddings, environment facts, result files."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python bench/x.py` from any checkout or worktree
    sys.path.insert(0, str(REPO))

from labelmesh.datasets import DEFAULT_DIR  # noqa: E402

DATASET = Path(os.environ.get("BANKING77_DIR", DEFAULT_DIR))
CACHE = REPO / ".cache" / "embeddings"
RESULTS = REPO / "bench" / "results"


def load_split(split: str) -> tuple[list[str], list[str]]:
    with (DATASET / f"{split}.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows], [r["category"] for r in rows]


def cached_embeddings(encoder, split: str, texts: list[str]) -> tuple[np.ndarray, float | None]:
    """Embeddings of `texts`, cached by encoder identity + text content; returns (X, seconds or None if cached)."""
    identity = getattr(encoder, "fingerprint", "") + f"|{encoder.max_tokens}|" + "\n".join(texts)
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    path = CACHE / f"banking77-{split}-{encoder.name}-{key}.npy"
    if path.exists():
        return np.load(path), None
    start = time.perf_counter()
    X = encoder.encode(texts)
    seconds = time.perf_counter() - start
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, X)
    return X, seconds


def environment() -> dict:
    import sklearn

    env = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus_available": len(os.sched_getaffinity(0)),
        # The bench machine may be shared: a load average above the CPU count means contended timings.
        "load_average_1_5_15": os.getloadavg(),
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        import torch
        import transformers

        env |= {"torch": torch.__version__, "transformers": transformers.__version__, "torch_threads": torch.get_num_threads()}
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return env


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steal_seconds() -> float:
    """CPU time the hypervisor gave other guests while this machine's CPUs wanted it (all CPUs, /proc/stat).

    On 2026-12-03 the same model-only timing ran at 121-314 texts/s within minutes; the slowest lost 9 s of
    a 16 s timing to steal. A ratio measured across a stretch with steal compares unlike things.
    """
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def infra_pids() -> dict[str, int]:
    """Kafka's and FerretDB's process ids (read-only: their CPU time during the burst says who was busy)."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "kafka.Kafka" in cmd:
            found["kafka"] = int(entry.name)
        elif "ferretdb" in cmd.split(" ")[0]:
            found["ferretdb"] = int(entry.name)
    return found


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[f"{c:.4f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])
