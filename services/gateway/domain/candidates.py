"""Each gateway replica's in-memory guess at which tasks are open, best first: a hint for claims, never the decision."""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

# How long a task seen with every slot taken is passed over before it is probed again (a slot comes back when a
# lease expires or is skipped, possibly on another replica, which this one does not hear about).
FULL_RETRY_SECONDS = 2.0
# How long a task the annotator was seen on is passed over for them: their lease may expire, possibly swept by
# another replica, and they may then take the task again.
HAD_RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class Candidate:
    task_id: str
    project: str
    item_id: str
    tier: str
    required: int
    priority: float
    created_at: datetime

    @property
    def order(self) -> tuple[float, datetime, str]:
        return (-self.priority, self.created_at, self.task_id)


@dataclass
class _Project:
    ranked: list[tuple[float, datetime, str]] = field(default_factory=list)  # Candidate.order, best first
    golden: list[tuple[datetime, str]] = field(default_factory=list)  # the golden pool, oldest first


class OpenTasks:
    """Routed tasks by (priority desc, created_at), the golden pool by age, and per-annotator/full hints.

    Whatever it says is confirmed in the database before a lease is handed out (services/gateway/queue.py),
    so a stale or incomplete index costs a wasted probe or a task offered later, never a wrong claim.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._projects: dict[str, _Project] = {}
        self._tasks: dict[str, Candidate] = {}
        self._by_item: dict[tuple[str, str], set[str]] = {}
        self._full: dict[str, float] = {}  # task id -> when it was seen full
        self._had: dict[str, dict[str, float]] = {}  # annotator -> tasks they hold or held -> when seen

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, candidate: Candidate, *, golden: bool = False) -> None:
        if candidate.task_id in self._tasks:
            return
        self._tasks[candidate.task_id] = candidate
        project = self._projects.setdefault(candidate.project, _Project())
        if golden:
            bisect.insort(project.golden, (candidate.created_at, candidate.task_id))
        else:
            bisect.insort(project.ranked, candidate.order)
            self._by_item.setdefault((candidate.project, candidate.item_id), set()).add(candidate.task_id)

    def replace_item(self, candidate: Candidate) -> None:
        """A re-route: the item's earlier tasks are superseded by this one."""
        for task_id in list(self._by_item.get((candidate.project, candidate.item_id), ())):
            if task_id != candidate.task_id:
                self.remove(task_id)
        self.add(candidate)

    def close_item(self, project: str, item_id: str) -> None:
        for task_id in list(self._by_item.pop((project, item_id), ())):
            self.remove(task_id)

    def remove(self, task_id: str) -> None:
        candidate = self._tasks.pop(task_id, None)
        if candidate is None:
            return
        project = self._projects[candidate.project]
        for entries, key in ((project.ranked, candidate.order), (project.golden, (candidate.created_at, task_id))):
            at = bisect.bisect_left(entries, key)
            if at < len(entries) and entries[at] == key:
                del entries[at]
        self._by_item.get((candidate.project, candidate.item_id), set()).discard(task_id)
        self._full.pop(task_id, None)

    def mark_full(self, task_id: str) -> None:
        self._full[task_id] = self._clock()

    def mark_free(self, task_id: str) -> None:
        self._full.pop(task_id, None)

    def mark_had(self, annotator: str, task_id: str) -> None:
        self._had.setdefault(annotator, {})[task_id] = self._clock()

    def forget_had(self, annotator: str, task_id: str) -> None:
        self._had.get(annotator, {}).pop(task_id, None)

    def ranked(self, project: str, annotator: str, tiers: frozenset[str]) -> Iterator[Candidate]:
        """Routed tasks of these tiers, best first, that this annotator is not known to have had and that were
        not seen full in the last FULL_RETRY_SECONDS."""
        entries = self._projects.get(project)
        if entries is None:
            return
        had = self._had.get(annotator, {})
        now = self._clock()
        for _, _, task_id in list(entries.ranked):
            candidate = self._tasks.get(task_id)
            if candidate is None or candidate.tier not in tiers:
                continue
            seen_had = had.get(task_id)
            if seen_had is not None and now - seen_had < HAD_RETRY_SECONDS:
                continue
            seen_full = self._full.get(task_id)
            if seen_full is not None and now - seen_full < FULL_RETRY_SECONDS:
                continue
            yield candidate

    def golden(self, project: str) -> list[str]:
        entries = self._projects.get(project)
        return [task_id for _, task_id in entries.golden] if entries else []
