"""Deterministic draws that decide which auto-accepted items are spot-checked and when golden tasks go out."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence

# The issue fixes spot checks to 5-10% of auto-accepted items; 8% sits inside with room both ways.
SPOT_CHECK_RATE_MIN = 0.05
SPOT_CHECK_RATE_MAX = 0.10
DEFAULT_SPOT_CHECK_RATE = 0.08
DEFAULT_GOLDEN_RATE = 0.05


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


def is_spot_checked(project: str, item_id: str, rate: float = DEFAULT_SPOT_CHECK_RATE, salt: str = "") -> bool:
    """Whether an auto-accepted item also goes to one human; raising the rate only ever adds items."""
    if not SPOT_CHECK_RATE_MIN <= rate <= SPOT_CHECK_RATE_MAX:
        raise ValueError(f"spot-check rate must be in [{SPOT_CHECK_RATE_MIN}, {SPOT_CHECK_RATE_MAX}], got {rate}")
    return uniform_draw("spot-check", project, item_id, salt) < rate


def should_inject_golden(
    annotator_id: str, task_number: int, rate: float = DEFAULT_GOLDEN_RATE, salt: str = ""
) -> bool:
    """Whether the annotator's task_number-th task (0-based) is a golden one.

    An independent draw per (annotator, n) rather than "every 20th task", so the schedule has no
    rhythm an annotator could learn. salt must be a server-side secret: this code is public, and
    without the salt anyone could compute their own schedule.
    """
    if task_number < 0:
        raise ValueError(f"task_number must be >= 0, got {task_number}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"golden rate must be in [0, 1], got {rate}")
    return uniform_draw("golden", annotator_id, str(task_number), salt) < rate


def choose_golden(
    annotator_id: str,
    task_number: int,
    candidates: Sequence[str],
    seen: Collection[str] = (),
    salt: str = "",
) -> str | None:
    """Pick which golden item to serve: one the annotator has not seen, chosen by a deterministic draw.

    Returns None when every candidate was already seen (the caller then serves a normal task).
    """
    fresh = sorted(set(candidates) - set(seen))
    if not fresh:
        return None
    index = int(uniform_draw("golden-pick", annotator_id, str(task_number), salt) * len(fresh))
    return fresh[index]
