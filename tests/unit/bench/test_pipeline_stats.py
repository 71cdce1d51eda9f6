"""The pipeline bench's arithmetic: first arrivals, latency pairing, percentiles and rates."""

from __future__ import annotations

import pytest

from bench.pipeline_stats import (
    by_group,
    cpu_bound_ceiling,
    first_timestamps,
    latencies_ms,
    percentile,
    rate,
    rebuild_ceiling,
    stage_stats,
)


def test_first_timestamps_keeps_each_items_earliest_record_and_only_wanted_items() -> None:
    records = [("a", 120), ("b", 100), ("a", 90), ("c", 50), ("b", 300)]
    assert first_timestamps(records) == {"a": 90, "b": 100, "c": 50}
    assert first_timestamps(records, wanted={"a", "b"}) == {"a": 90, "b": 100}


def test_latencies_pair_items_present_at_both_ends() -> None:
    assert latencies_ms({"a": 100, "b": 200, "c": 300}, {"a": 150, "c": 310, "z": 1}) == {"a": 50, "c": 10}


def test_percentile_interpolates_and_is_none_without_values() -> None:
    assert percentile(range(1, 101), 50) == pytest.approx(50.5)
    assert percentile([10.0], 99) == 10.0
    assert percentile([], 50) is None


def test_rate_is_count_per_second_of_the_window() -> None:
    assert rate(500, 1_000.0, 1_500.0) == pytest.approx(1000.0)
    assert rate(0, 0.0, 10.0) is None
    assert rate(5, 10.0, 10.0) is None


def test_stage_stats_counts_arrivals_and_measures_from_the_window_start() -> None:
    start = {"a": 1_000, "b": 1_100, "c": 1_200, "other": 0}
    end = {"a": 1_010, "b": 1_500, "other": 5}
    s = stage_stats(start, end, ["a", "b", "c"], window_start_ms=900)
    assert (s.items, s.arrived) == (3, 2)
    assert s.items_per_s == pytest.approx(2 / 0.6)  # 2 arrivals, last at 1500, window from 900
    assert s.p50_ms == pytest.approx(205.0)
    assert s.max_ms == 400.0
    # Without a window start the earliest ingest of the measured items opens it ("other" is not one of them).
    assert stage_stats(start, end, ["a", "b"]).items_per_s == pytest.approx(2 / 0.5)


def test_stage_stats_of_nothing_arrived_has_no_rate_or_latency() -> None:
    s = stage_stats({"a": 1}, {}, ["a"])
    assert (s.arrived, s.items_per_s, s.p50_ms, s.p99_ms) == (0, None, None, None)


def test_by_group_splits_latencies_per_tier() -> None:
    start = {"a": 0, "b": 0, "c": 0}
    end = {"a": 100, "b": 300, "c": 50}
    groups = by_group(start, end, {"a": "single", "b": "single", "c": "auto"})
    assert list(groups) == ["auto", "single"]
    assert groups["single"].arrived == 2 and groups["single"].max_ms == 300.0
    assert groups["auto"].p99_ms == 50.0


def test_cpu_bound_ceiling_divides_the_cpus_time_by_each_items_cost() -> None:
    # A model filling 2 CPUs at 7.2 CPU-ms per text runs ~278 texts/s; 1.8 CPU-ms of everything else per item
    # leaves 2,000 / 9.0 = 222 items/s: 80% of the model's rate.
    assert cpu_bound_ceiling(2, 7.2, 1.8, 2000 / 7.2) == pytest.approx(2000 / 9.0)
    assert cpu_bound_ceiling(2, 7.2, 1.8, 2000 / 7.2) / (2000 / 7.2) == pytest.approx(0.8)


def test_cpu_bound_ceiling_never_passes_the_models_own_rate_and_rejects_no_cost() -> None:
    # A model that leaves CPUs idle (here 100 texts/s on CPU worth 1,000) still caps the pipeline.
    assert cpu_bound_ceiling(2, 1.0, 1.0, 100.0) == 100.0
    with pytest.raises(ValueError):
        cpu_bound_ceiling(2, 0.0, 0.0, 100.0)
    with pytest.raises(ValueError):
        cpu_bound_ceiling(0, 1.0, 1.0, 100.0)


def test_rebuild_ceiling_is_the_cpus_time_over_the_cost_or_the_one_threaded_process_alone() -> None:
    # 0.3 + 0.1 + 0.6 CPU-ms per item on 2 CPUs: 2,000 items/s, set by all of them together.
    assert rebuild_ceiling(2, {"service_process": 0.3, "kafka": 0.1, "ferretdb": 0.6}) == (
        pytest.approx(2000.0), "all processes")
    # A service loop of 0.8 CPU-ms per item cannot pass 1,250 items/s, though the CPUs could do 1,666.
    assert rebuild_ceiling(2, {"service_process": 0.8, "kafka": 0.1, "ferretdb": 0.3}) == (
        pytest.approx(1250.0), "service_process")
    with pytest.raises(ValueError):
        rebuild_ceiling(2, {"service_process": 0.0})
