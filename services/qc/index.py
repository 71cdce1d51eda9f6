"""Labelled embeddings per project, in memory, for the nearest-neighbour check; rebuilt from qc's items on start."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class LabelledEmbeddings:
    """item -> (label, vector); matrix() caches the stacked rows until the next change."""

    rows: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)
    _cache: tuple[np.ndarray, list[str], list[str]] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def upsert(self, item_id: str, label: str, vector: np.ndarray) -> None:
        if not np.any(vector):
            return  # all zeros: cosine undefined, the item cannot be anyone's neighbour
        self.rows[item_id] = (label, vector)
        self._cache = None

    def matrix(self) -> tuple[np.ndarray, list[str], list[str]]:
        """(embeddings n x d, labels, ids)."""
        if self._cache is None:
            ids = list(self.rows)
            labels = [self.rows[i][0] for i in ids]
            matrix = np.stack([self.rows[i][1] for i in ids]) if ids else np.zeros((0, 0), dtype=np.float32)
            self._cache = (matrix, labels, ids)
        return self._cache
