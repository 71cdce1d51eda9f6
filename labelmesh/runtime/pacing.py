"""Spacing for periodic work: reads of a whole collection, so they take a bounded share of the time, and passes
tried again after a failure.

On FerretDB 1.24 a count or filtered scan reads every document (only `_id` equality reaches SQLite), so a
count that was cheap on a small project takes seconds on a large one. Each caller times its scan and waits
until it would have spent at most SCAN_SHARE of the elapsed time scanning.
"""

from __future__ import annotations

import time

SCAN_SHARE = 0.05


def next_due(started: float, share: float = SCAN_SHARE) -> float:
    """The monotonic time before which a scan begun at `started` (and just finished) should not run again."""
    now = time.monotonic()
    return now + (now - started) / share


def after_failures(failures: int, first_s: float, every_s: float) -> float:
    """How long a periodic pass waits before its next try: `every_s` after a pass that worked (`failures` 0), else
    `first_s` after the first failure in a row, doubling with each further one, never more than `every_s`."""
    if failures <= 0:
        return every_s
    return min(every_s, first_s * 2 ** min(failures - 1, 30))
