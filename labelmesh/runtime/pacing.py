"""Spacing for periodic reads of a whole collection, so they take a bounded share of the time.

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
