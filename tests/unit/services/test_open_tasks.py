"""The gateway's in-memory index of open tasks (services.gateway.domain.candidates): order, closes and hints."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from services.gateway.domain.candidates import FULL_RETRY_SECONDS, HAD_RETRY_SECONDS, Candidate, OpenTasks

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
ALL = frozenset({"single", "multi"})


def _c(task_id: str, priority: float, age: int, tier: str = "single", item: str | None = None) -> Candidate:
    return Candidate(task_id=task_id, project="p", item_id=item or task_id, tier=tier, required=1,
                     priority=priority, created_at=T0 + timedelta(seconds=age))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _ids(index: OpenTasks, annotator: str = "a", tiers: frozenset[str] = ALL) -> list[str]:
    return [c.task_id for c in index.ranked("p", annotator, tiers)]


def test_highest_priority_first_then_oldest_and_only_the_asked_tiers() -> None:
    index = OpenTasks()
    for c in (_c("low", 0.1, 0), _c("new", 0.9, 5), _c("old", 0.9, 1), _c("m", 0.5, 0, tier="multi")):
        index.add(c)
    assert _ids(index) == ["old", "new", "m", "low"]
    assert _ids(index, tiers=frozenset({"single"})) == ["old", "new", "low"]
    assert _ids(index, tiers=frozenset({"expert"})) == [] and list(index.ranked("other", "a", ALL)) == []


def test_a_reroute_supersedes_and_a_final_label_closes_the_item() -> None:
    index = OpenTasks()
    index.add(_c("t1", 0.5, 0, item="x"))
    index.add(_c("t2", 0.4, 0, item="y"))
    index.replace_item(_c("t3", 0.1, 1, item="x"))
    assert _ids(index) == ["t2", "t3"]
    index.close_item("p", "x")
    assert _ids(index) == ["t2"] and len(index) == 1
    index.remove("t2")
    index.remove("t2")  # twice changes nothing
    assert _ids(index) == [] and len(index) == 0


def test_full_and_had_tasks_are_passed_over_for_a_while_then_tried_again() -> None:
    clock = Clock()
    index = OpenTasks(clock)
    index.add(_c("full", 0.9, 0))
    index.add(_c("mine", 0.8, 0))
    index.add(_c("free", 0.1, 0))
    index.mark_full("full")
    index.mark_had("a", "mine")
    assert _ids(index, "a") == ["free"] and _ids(index, "b") == ["mine", "free"]
    clock.now += FULL_RETRY_SECONDS
    assert _ids(index, "a") == ["full", "free"]
    clock.now += HAD_RETRY_SECONDS
    assert _ids(index, "a") == ["full", "mine", "free"]
    index.mark_full("full")
    index.mark_free("full")
    index.mark_had("a", "mine")
    index.forget_had("a", "mine")
    assert _ids(index, "a") == ["full", "mine", "free"]


def test_the_golden_pool_is_kept_apart_oldest_first() -> None:
    index = OpenTasks()
    index.add(_c("g2", 0.0, 2), golden=True)
    index.add(_c("g1", 0.0, 1), golden=True)
    index.add(_c("r", 0.5, 0))
    assert index.golden("p") == ["g1", "g2"] and _ids(index) == ["r"] and index.golden("q") == []
    index.remove("g1")
    assert index.golden("p") == ["g2"]
