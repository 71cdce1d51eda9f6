"""Deterministic uniform draws: the same inputs always decide the same way, so replaying events changes nothing."""

from __future__ import annotations

import hashlib


def uniform_draw(*parts: str) -> float:
    """A uniform number in [0, 1) fixed by its inputs, so replaying the same events decides the same way.

    Each part is length-prefixed, so ("ab", "c") and ("a", "bc") draw differently.
    """
    digest = hashlib.sha256()
    for part in parts:
        raw = part.encode("utf-8")
        digest.update(len(raw).to_bytes(8, "big"))
        digest.update(raw)
    return int.from_bytes(digest.digest()[:8], "big") / 2**64
