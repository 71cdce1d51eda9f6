"""Memory and time of `labelmesh ingest`'s file passes (the check, then the rows to send) over a 200 MB CSV.

Usage: python bench/ingest_memory.py [--mb 200]
Writes bench/results/ingest_memory.json.

The file is generated in a temporary directory (rows of ~1 KB, an id, a golden column on every 50th row). Two
runs: one untimed by tracing, for wall time and the process's peak resident memory, and one under tracemalloc
for the peak Python allocation. tests/unit/test_ingest_file.py checks the same passes' peak does not grow with the
file (1 MB against 10 MB), cheaply enough for CI.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

from _common import environment, write_result

from labelmesh.ingest_file import Columns, Validated


def make_file(path: Path, mb: int) -> int:
    body, rows = "x" * 990, 0
    with path.open("w") as handle:
        handle.write("id,text,gold\n")
        while handle.tell() < mb * 1024 * 1024:
            handle.write(f"{rows},{rows} {body},{'pos' if rows % 50 == 0 else ''}\n")
            rows += 1
    return rows


def passes(path: Path) -> tuple[int, float]:
    started = time.perf_counter()
    checked = Validated(path, Columns("text", "id", "gold"), ["pos", "neg"])
    checked.raise_for_errors()
    sent = sum(1 for _ in checked.items())
    checked.close()
    return sent, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        rows = make_file(path, args.mb)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        sent, seconds = passes(path)
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        traced_sent, traced_seconds = passes(path)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        result = {
            "file_bytes": path.stat().st_size, "rows": rows, "sent": sent,
            "check_and_send_pass_seconds": round(seconds, 2), "rows_per_second": round(rows / seconds),
            "peak_rss_mib_before": round(rss_before / 1024, 1), "peak_rss_mib_after": round(rss_after / 1024, 1),
            "peak_python_alloc_mib": round(peak / 2**20, 2), "traced_pass_seconds": round(traced_seconds, 2),
            "environment": environment(),
        }
    assert sent == traced_sent == rows
    print(result)
    print(f"wrote {write_result('ingest_memory', result)}")


if __name__ == "__main__":
    main()
