"""bench/replica_cost.py runs the pipeline benchmark with that benchmark's own options."""

from __future__ import annotations

import argparse

from bench.replica_cost import _args
from bench.replica_cost import pipeline_parser as parser  # bench/pipeline_throughput.py's, as the script imports it


def test_every_pipeline_option_reaches_the_replica_run_with_its_sizes_and_replica_count() -> None:
    # A hand-listed copy of the options missed footprint_every_s and hold_s when the load bench gained them,
    # and the replica bench failed with AttributeError before its first burst.
    base = argparse.Namespace(items=123, bootstrap=45, loop_items=6, port_offset=7, grpc_port=50999, seed=3,
                              settle_lag_s=9.0)
    args = _args(base, replicas=2)
    assert set(vars(parser().parse_args([]))) <= set(vars(args))
    assert (args.items, args.bootstrap, args.loop_items, args.port_offset, args.grpc_port, args.seed,
            args.settle_lag_s) == (123, 45, 6, 7, 50999, 3, 9.0)
    assert (args.replicas, args.model_repeats, args.alone) == (2, 1, False)
