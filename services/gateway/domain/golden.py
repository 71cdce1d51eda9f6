"""Golden tasks mixed into every annotator's stream at a rate, on a schedule they cannot learn or compute."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from labelmesh.draws import uniform_draw

DEFAULT_GOLDEN_RATE = 0.05
# After this many tasks an annotator has answered ~20 golden items at the full rate: enough for qc's
# suspension rule (10 answers) and for their reliability to rest on their own record rather than the
# prior (worth 4 answers). From then on golden items only watch for drift, at the settled rate.
DEFAULT_GOLDEN_WARMUP_TASKS = 400
DEFAULT_SETTLED_GOLDEN_RATE = 0.02


def golden_rate_for(
    task_number: int,
    rate: float = DEFAULT_GOLDEN_RATE,
    settled_rate: float = DEFAULT_SETTLED_GOLDEN_RATE,
    warmup_tasks: int = DEFAULT_GOLDEN_WARMUP_TASKS,
) -> float:
    """The golden rate for an annotator's task_number-th task: `rate` while their record is built, then settled_rate.

    settled_rate is capped at rate (a settled annotator never gets more golden tasks than a new one).
    """
    if task_number < 0:
        raise ValueError(f"task_number must be >= 0, got {task_number}")
    if warmup_tasks < 0:
        raise ValueError(f"warmup_tasks must be >= 0, got {warmup_tasks}")
    for name, value in (("rate", rate), ("settled_rate", settled_rate)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"golden {name} must be in [0, 1], got {value}")
    return rate if task_number < warmup_tasks else min(rate, settled_rate)


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


def golden_turn(annotator_id: str, task_number: int, rate: float, settled_rate: float, warmup_tasks: int,
                salt: str) -> bool:
    """Whether the annotator's task_number-th task is a golden one, at the rate their record calls for."""
    return should_inject_golden(annotator_id, task_number,
                                golden_rate_for(task_number, rate, settled_rate, warmup_tasks), salt)
