"""Golden tasks mixed into every annotator's stream at a rate, on a schedule they cannot learn or compute."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from labelmesh.draws import uniform_draw

DEFAULT_GOLDEN_RATE = 0.05


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
