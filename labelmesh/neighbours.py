"""An in-memory cosine index of labelled items per project, rebuilt from a service's own store on start."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Hit:
    item_id: str
    label: str
    similarity: float


@dataclass
class LabelledIndex:
    """Unit-norm vectors with their current labels; relabelling an item replaces its row."""

    dim: int | None = None
    _ids: list[str] = field(default_factory=list)
    _labels: list[str] = field(default_factory=list)
    _rows: dict[str, int] = field(default_factory=dict)
    _matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    _size: int = 0

    def __len__(self) -> int:
        return self._size

    def upsert(self, item_id: str, label: str, vector: np.ndarray) -> None:
        vector = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            return
        vector = vector / norm
        if self.dim is None:
            self.dim = vector.shape[0]
            self._matrix = np.zeros((256, self.dim), dtype=np.float32)
        if vector.shape[0] != self.dim:
            raise ValueError(f"vector has {vector.shape[0]} dimensions, index has {self.dim}")
        row = self._rows.get(item_id)
        if row is None:
            if self._size == self._matrix.shape[0]:  # amortised growth instead of a copy per insert
                self._matrix = np.concatenate([self._matrix, np.zeros_like(self._matrix)])
            row = self._size
            self._size += 1
            self._rows[item_id] = row
            self._ids.append(item_id)
            self._labels.append(label)
        self._labels[row] = label
        self._matrix[row] = vector

    def rows(self) -> tuple[np.ndarray, list[str], list[str]]:
        """(unit rows n x d, labels, ids): views of the index as it is now, not copies; do not modify them."""
        if self.dim is None:
            return np.zeros((0, 0), dtype=np.float32), [], []
        return self._matrix[: self._size], self._labels, self._ids

    def label_of(self, item_id: str) -> str | None:
        row = self._rows.get(item_id)
        return None if row is None else self._labels[row]

    def nearest(self, vector: np.ndarray, k: int = 5, exclude: str | None = None) -> list[Hit]:
        """The k most similar labelled items (cosine), best first; the item itself is left out."""
        if self._size == 0 or self.dim is None:
            return []
        query = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(query))
        if norm == 0.0 or query.shape[0] != self.dim:
            return []
        sims = self._matrix[: self._size] @ (query / norm)
        if exclude is not None and exclude in self._rows:
            sims[self._rows[exclude]] = -np.inf
        take = min(k, self._size)
        top = np.argpartition(-sims, take - 1)[:take]
        top = top[np.argsort(-sims[top])]
        return [
            Hit(self._ids[i], self._labels[i], float(sims[i])) for i in top if np.isfinite(sims[i])
        ]
