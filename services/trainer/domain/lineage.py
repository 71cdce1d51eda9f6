"""Training-set identity: a content hash of exactly the label versions a model was trained on."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from labelmesh.draws import uniform_draw


def member_key(item_id: str, version: int) -> str:
    return f"{item_id}@{version}"


def training_set_version(members: Iterable[tuple[str, int, str]]) -> str:
    """sha256 over sorted (item, label version, label) lines; the same labels always give the same version."""
    lines = sorted(f"{item}\t{version}\t{label}" for item, version, label in members)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def in_holdout(project: str, item_id: str, fraction: float) -> bool:
    """A fixed random share of items is never trained on, so every model is judged on the same ground."""
    return uniform_draw(project, item_id, "holdout") < fraction
