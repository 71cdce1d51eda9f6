"""What a batch of events changes in the trainer's examples: embeddings, the newest final label, its version history.

An example is one item's training row: its embedding (item.prelabeled) and its final label (label.finalized),
merged whichever comes first. Only a newer label version replaces a stored one, and every accepted version is
kept in the history (lineage). Golden items and a fixed random share of the others are held out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from schemas.events import Envelope, ItemPrelabeled, LabelFinalized
from schemas.keys import item_key
from services.trainer.domain.lineage import in_holdout


@dataclass
class ExampleChanges:
    """Per example key, the fields to set (merged into what is stored); the label versions to add to the history;
    the projects whose labels changed."""

    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: list[dict[str, Any]] = field(default_factory=list)
    labelled: set[str] = field(default_factory=set)


def fold_events(events: Sequence[Envelope], stored: Mapping[str, int], holdout_fraction: float) -> ExampleChanges:
    """The changes a batch makes, given the label version stored per example key (absent: none yet).

    One merged set of fields per example, so that new examples (nearly all) become one insert for the batch; a
    final label is taken only if newer than the stored one and than an earlier one in the same batch.
    """
    latest = dict(stored)
    changes = ExampleChanges()
    for event in events:
        key = item_key(event.project, event.item_id)
        if isinstance(event, ItemPrelabeled):
            vector = np.asarray(event.embedding, dtype=np.float32)
            changes.fields.setdefault(key, {}).update(
                project=event.project, item_id=event.item_id, embedding=vector.tobytes(), encoder=event.encoder)
        elif isinstance(event, LabelFinalized):
            changes.labelled.add(event.project)
            if latest.get(key, 0) >= event.version:
                continue
            latest[key] = event.version
            changes.fields.setdefault(key, {}).update(
                project=event.project, item_id=event.item_id, label=event.label, version=event.version,
                provenance=event.provenance.value, golden=event.golden, guideline_version=event.guideline_version,
                holdout=event.golden or in_holdout(event.project, event.item_id, holdout_fraction),
                # Spans projects: what a span tagger trains on, with the text (services/trainer/items.py).
                **({"spans": [s.model_dump() for s in event.spans]} if event.spans is not None else {}))
            changes.versions.append({"key": f"{key}@{event.version}", "project": event.project,
                                     "item_id": event.item_id, "version": event.version, "label": event.label,
                                     "provenance": event.provenance.value,
                                     "guideline_version": event.guideline_version, "at": event.occurred_at})
    return changes
