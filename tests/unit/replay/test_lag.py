"""Consumer lag as replay tools and bench/replay.py wait on it: lag 0 only once every group's input has arrived.

A group that finishes a batch publishes what it produced, then commits. The scripted broker below does exactly
that at the moment the lag reader looks at that group's committed offsets, so that each test sits on the race
it is named after, deterministically.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition

import labelmesh.replay as replay
from labelmesh.runtime.settings import CommonSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))  # bench/replay.py imports its siblings

NS = "lagtest"
ITEMS, TALLY = f"{NS}.qc", f"{NS}.qc.tally"
LABELS, EVIDENCE, FLAGS = (TopicPartition(f"{NS}.{t}", 0) for t in ("label.submitted", "qc.evidence", "qc.flagged"))
Scripted = Callable[["Broker"], None]
READS = {ITEMS: [LABELS, FLAGS], TALLY: [EVIDENCE]}


@dataclass
class Broker:
    """End offsets, committed offsets per group, and what happens when a group's offsets are next read."""

    ends: dict[TopicPartition, int]
    commits: dict[str, dict[TopicPartition, int]]
    on_read: dict[str, Callable[[], None]] = field(default_factory=dict)

    def finish_batch(self, group: str, consumed: TopicPartition, produced: TopicPartition) -> None:
        """The group's last batch, as the bus does it: publish its output, then commit past its input."""
        def run() -> None:
            self.ends[produced] += 1
            self.commits[group][consumed] = self.ends[consumed]
        self.on_read[group] = run


class Admin:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def list_consumer_groups(self) -> list[tuple[str, str]]:
        return [(g, "consumer") for g in self.broker.commits]

    async def list_consumer_group_offsets(self, group: str) -> dict[TopicPartition, SimpleNamespace]:
        hook = self.broker.on_read.pop(group, None)
        if hook is not None:
            hook()
        return {tp: SimpleNamespace(offset=o) for tp, o in self.broker.commits[group].items()}


class Consumer:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.broker.ends[tp] for tp in partitions}

    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 0 for tp in partitions}


def _broker() -> Broker:
    """Both groups one batch from done: the items group has its last 5 labels to handle, the tally group has
    counted every fact published so far."""
    return Broker(ends={LABELS: 100, EVIDENCE: 40, FLAGS: 3},
                  commits={ITEMS: {LABELS: 95, FLAGS: 3}, TALLY: {EVIDENCE: 40}})


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Callable[[Broker], None]:
    def use(broker: Broker) -> None:
        monkeypatch.setattr(replay, "AIOKafkaAdminClient", lambda **kw: Admin(broker))
        monkeypatch.setattr(replay, "AIOKafkaConsumer", lambda *a, **kw: Consumer(broker))

        async def partitions(bootstrap: str, names: list[str]) -> list[TopicPartition]:
            return [tp for tp in (LABELS, EVIDENCE, FLAGS) if tp.topic in names]
        monkeypatch.setattr(replay, "topic_partitions", partitions)
    return use


def _lag(topics: dict[str, list[str]] | None = None) -> dict[str, int]:
    settings = CommonSettings(namespace=NS, topic_prefix=f"{NS}.")
    return asyncio.run(replay.consumer_lag(settings, "qc", topics))


def test_a_fact_published_by_the_items_groups_last_batch_is_lag_of_the_tally_group(scripted: Scripted) -> None:
    broker = _broker()
    broker.finish_batch(ITEMS, consumed=LABELS, produced=EVIDENCE)
    scripted(broker)
    assert _lag() == {ITEMS: 0, TALLY: 1}


def test_a_flag_published_by_the_tally_groups_last_batch_is_lag_of_the_items_group(scripted: Scripted) -> None:
    # Read group by group (offsets, then that group's ends), the items group was done before the tally group
    # published its flag: both groups showed lag 0 with the flag unread.
    broker = _broker()
    broker.commits[ITEMS][LABELS] = 100
    broker.ends[EVIDENCE] = 41
    broker.finish_batch(TALLY, consumed=EVIDENCE, produced=FLAGS)
    scripted(broker)
    assert _lag() == {ITEMS: 1, TALLY: 0}


def test_the_replay_bench_waits_for_the_tally_group_to_count_the_items_groups_last_facts() -> None:
    # bench/replay.py read the end offsets first: the items group's last batch could publish and commit in
    # between, and the tally group, busy with those facts (a label-error pass takes seconds), looked caught up;
    # the bench then read qc's state before the pass had written anything (replay-qc.json: no pass rebuilt).
    from replay import LagWatch  # bench/replay.py

    broker = _broker()
    broker.finish_batch(ITEMS, consumed=LABELS, produced=EVIDENCE)
    watch = LagWatch.__new__(LagWatch)
    watch.admin, watch.consumer = Admin(broker), Consumer(broker)
    watch.partitions, watch.starts = READS, {tp: 0 for tp in (LABELS, EVIDENCE, FLAGS)}
    assert asyncio.run(watch.lag()) == {ITEMS: 0, TALLY: 1}
