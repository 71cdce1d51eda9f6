"""What every router replica keeps in memory to route: thresholds in force and the labelled-neighbour index.

Caches only, never a decision's source: thresholds are re-read from their owner's document (by `_id`) at each
batch, and the index is rebuilt from the store on start and fed every final label (learn_labels).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from prometheus_client import Gauge

from labelmesh.neighbours import LabelledIndex
from labelmesh.runtime.mongo import find_by_ids
from labelmesh.runtime.service import ServiceRuntime
from schemas.events import Envelope, LabelFinalized, Thresholds
from schemas.keys import item_key
from services.router.champion import ChampionCache
from services.router.domain.evidence import ProjectLearning
from services.router.domain.thresholds import NO_EVIDENCE
from services.router.store import ThresholdStore


class ReplicaCache:
    def __init__(self, rt: ServiceRuntime) -> None:
        self.items = rt.db["items"]
        self.store = ThresholdStore(rt.db)
        self.champions = ChampionCache(rt.db)  # refreshed by the item owner for the finals it turns into evidence
        self.thresholds: dict[str, Thresholds] = {}
        self.indexes: dict[str, LabelledIndex] = {}
        # Items with a final label whose embedding (or label) is not stored yet: looked up again at each batch.
        self.pending: set[str] = set()
        self.gauge = Gauge(
            "labelmesh_router_threshold", "Confidence thresholds in force", ["project", "border"], registry=rt.registry
        )

    async def restore(self) -> None:
        self._adopt((await self.store.load_all()).items())
        async for doc in self.items.find({"label": {"$exists": True}, "embedding": {"$exists": True},
                                         "golden": {"$ne": True}}):
            self.index_doc(doc)

    async def refresh(self, projects: Iterable[str]) -> None:
        """Thresholds in force for these projects, and pending labels, from the store (by `_id`)."""
        self._adopt((await self.store.load_many(projects)).items())
        if self.pending:
            for doc in await find_by_ids(self.items, list(self.pending)):
                if "label" in doc and "embedding" in doc:
                    self.index_doc(doc)
                    self.pending.discard(doc["_id"])

    async def learn_labels(self, events: list[Envelope]) -> None:
        """Every final label into this replica's neighbour index; changes memory only (a broadcast handler).

        The embedding is read from the item owner's document; one not stored yet stays pending until it is.
        """
        self.pending.update(item_key(e.project, e.item_id) for e in events if isinstance(e, LabelFinalized))
        await self.refresh(())

    def index_doc(self, doc: dict[str, Any]) -> None:
        """An `items` document holding a label and an embedding into its project's index; never a golden item,
        whose label is the answer key an expert would otherwise see among the neighbours before being tested."""
        if doc.get("golden"):
            return
        self.index(doc["project"]).upsert(doc["item_id"], doc["label"], np.frombuffer(doc["embedding"], np.float32))

    def index(self, project: str) -> LabelledIndex:
        return self.indexes.setdefault(project, LabelledIndex())

    def current(self, project: str) -> Thresholds:
        return self.thresholds.get(project) or NO_EVIDENCE

    def _adopt(self, learned: Iterable[tuple[str, ProjectLearning]]) -> None:
        for project, state in learned:
            if state.thresholds is None:
                continue
            self.thresholds[project] = state.thresholds
            for border, value in state.thresholds.model_dump().items():
                self.gauge.labels(project, border).set(value)
