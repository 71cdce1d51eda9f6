"""The router's ownership rests on co-partitioned topics: an item's partition number is the same in each."""

from __future__ import annotations

from schemas.events import ItemPrelabeled, LabelFinalized, QcFlagged
from schemas.topics import TOPIC_SPECS


def test_the_topics_the_item_owner_reads_have_equal_partition_counts() -> None:
    partitions = {spec.name: spec.partitions for spec in TOPIC_SPECS}
    owned = {partitions[t.TOPIC] for t in (ItemPrelabeled, LabelFinalized, QcFlagged)}
    assert len(owned) == 1, f"the range assignor co-locates an item's events only on equal counts: {partitions}"
