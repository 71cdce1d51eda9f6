"""Each project's champion model as the router holds it, to re-score items pre-labelled by an older one.

An item is pre-labelled once, by the model of its moment. A project ingested in bulk is therefore pre-labelled
by its first model, and the live BANKING77 run kept those pre-labels to the end: 9,078 of 9,443 items queued
for review on model v1's confidences (75% on test.csv), while the champion reached 91.5% over 20 versions; the
auto border, learned from evidence on v1's confidences, opened only at the very end
(bench/results/live_quality-minilm-9443.json). Offline, each item meets the champion in force when its turn
comes. The router keeps every item's embedding, so it re-scores with the champion instead of asking the
prelabeler to embed again:
- the thresholds owner promotes queued items that the champion's confidence now puts above the auto border,
  on a new model as on a lowered border (thresholds_owner.py);
- the item owner records a verified item's evidence as the champion's verdict on it (items.py), so the
  borders are learned on the confidences they are applied to.
Nothing here changes a decision's inputs on its own: the champion comes from model.updated, recorded once.

Writers: `models` and `champions` (a labelmesh.runtime.models.ModelRegistry) are written only by the replica
that reads model.updated (one partition) in the thresholds group; every replica reads them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.ml.artifact import ModelRejected, load_artifact
from labelmesh.ml.head import TrainedHead
from labelmesh.runtime.models import ModelRegistry
from schemas.events import LabelScore

log = logging.getLogger(__name__)
TOP_K = 5  # labels kept per re-scored item, as the prelabeler's default top_k


@dataclass(frozen=True, eq=False)
class Champion:
    version: int
    encoder: str
    head: TrainedHead

    def scores(self, vectors: np.ndarray) -> list[tuple[LabelScore, ...]]:
        """Each embedding's calibrated top-k under this model, as event scores."""
        return [tuple(LabelScore(label=label, probability=min(1.0, max(0.0, p))) for label, p in ranked)
                for ranked in self.head.top_k(np.asarray(vectors, dtype=np.float32), TOP_K)]

    def fits(self, vector: np.ndarray, encoder: str | None) -> bool:
        """Whether an embedding can be re-scored by this model: same encoder, same width."""
        return encoder == self.encoder and vector.shape == (self.head.dim,)


class ChampionCache:
    """A replica's loaded champions (a cache of the registry: the pointer is re-read at each refresh)."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.store = ModelRegistry(db, pointers="champions")
        self.loaded: dict[str, Champion] = {}
        self.refused: dict[str, int] = {}  # a version whose artifact does not load, not tried again

    async def refresh(self, projects: Iterable[str]) -> None:
        for project, version in (await self.store.versions(projects)).items():
            current = self.loaded.get(project)
            if (current is not None and current.version >= version) or self.refused.get(project) == version:
                continue
            event = await self.store.load(project, version)
            if event is None:
                continue
            try:
                model = load_artifact(event, event.encoder)
            except ModelRejected as exc:
                log.warning("not re-scoring %s with model v%d: %s", project, version, exc)
                self.refused[project] = version
                continue
            if model.head is None:  # a spans project's tagger: its items are never re-scored
                self.refused[project] = version
                continue
            self.loaded[project] = Champion(version, event.encoder, model.head)

    def get(self, project: str) -> Champion | None:
        return self.loaded.get(project)
