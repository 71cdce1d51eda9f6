"""The topic catalogue keeps item-keyed topics co-partitioned, which partition ownership relies on."""

from __future__ import annotations

from schemas.events import EVENT_TYPES, ModelUpdated, ProjectConfigured
from schemas.topics import TOPIC_SPECS


def test_every_item_keyed_topic_has_the_same_partition_count() -> None:
    # The range assignor gives a group member the same partition numbers of each topic it reads; that makes it
    # the one writer of an item's documents only if the item lands on the same partition number everywhere.
    partitions = {spec.name: spec.partitions for spec in TOPIC_SPECS}
    item_keyed = [t.TOPIC for t in EVENT_TYPES if t not in (ProjectConfigured, ModelUpdated)]  # keyed by project
    assert len(item_keyed) >= 5
    assert {partitions[topic] for topic in item_keyed} == {3}, {t: partitions[t] for t in item_keyed}
