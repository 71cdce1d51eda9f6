"""The load bench's footprint summary: peak and last documents per service and collection, RSS per process."""

from __future__ import annotations

import os

from bench.footprint import rss_mb, summary


def test_the_summary_keeps_each_count_s_peak_and_last_and_counts_missed_samples() -> None:
    samples = [
        {"t_s": 0.0, "documents": {"qc": {"processed_events": 10, "evidence": 5}}, "rss_mb": {"qc": 100.0}},
        {"t_s": 20.0, "documents": {"qc": {"processed_events": 900, "evidence": 40}}, "rss_mb": {"qc": 180.5}},
        {"t_s": 40.0, "error": "AutoReconnect('gone')"},
        {"t_s": 60.0, "documents": {"qc": {"processed_events": 30, "evidence": 2}, "router": {"outbox": 0}},
         "rss_mb": {"qc": 170.0, "router": 90.0}},
    ]
    got = summary(samples)
    assert (got["samples"], got["missed"], got["seconds"]) == (3, 1, 60.0)
    assert got["documents"]["qc"] == {"processed_events": {"peak": 900, "last": 30},
                                      "evidence": {"peak": 40, "last": 2}}
    assert got["documents"]["router"] == {"outbox": {"peak": 0, "last": 0}}
    assert got["rss_mb"] == {"qc": {"peak": 180.5, "last": 170.0}, "router": {"peak": 90.0, "last": 90.0}}


def test_an_empty_run_summarises_to_nothing() -> None:
    assert summary([]) == {"samples": 0, "missed": 0, "seconds": 0.0, "documents": {}, "rss_mb": {}}


def test_rss_of_this_process_and_of_none() -> None:
    mine = rss_mb(os.getpid())
    assert mine is not None and mine > 0
    assert rss_mb(2**22 + 12345) is None  # above the kernel's pid limit: no such process
