"""Each service's own copy of the project catalogue, learned from project.configured events."""

from __future__ import annotations

import asyncio

from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.bus import EventBus, PoisonEvent
from labelmesh.runtime.settings import PROJECT_WAIT_S
from schemas.events import Envelope, ProjectConfigured


class ProjectCatalog:
    """Latest configuration per project.

    Two subscriptions feed it: the service's shared group writes the durable copy (project.configured is keyed
    by project, so each project's document has one writer), and a broadcast updates every replica's cache, so
    a guideline or settings change reaches every process. The store lets a restart answer before the
    broadcast has been replayed.
    """

    def __init__(self, db: AsyncDatabase, wait_s: float = PROJECT_WAIT_S) -> None:
        self.collection = db["projects"]
        self.wait_s = wait_s
        self._cache: dict[str, ProjectConfigured] = {}
        # When a project was first asked for and not known: later events of it wait only until that deadline.
        self._missing_since: dict[str, float] = {}

    def attach(self, bus: EventBus) -> None:
        bus.subscribe([ProjectConfigured.TOPIC], self.store, name=f"{bus.service}.projects")
        bus.subscribe([ProjectConfigured.TOPIC], self.learn, name=f"{bus.service}.projects", broadcast=True)

    def _remember(self, event: ProjectConfigured) -> bool:
        """Cache the event unless a newer guideline version is known; says whether it was taken."""
        known = self._cache.get(event.project)
        if known is not None and known.guideline_version > event.guideline_version:
            return False
        self._cache[event.project] = event
        self._missing_since.pop(event.project, None)
        return True

    async def learn(self, events: list[Envelope]) -> None:
        for event in events:
            assert isinstance(event, ProjectConfigured)
            self._remember(event)

    async def store(self, events: list[Envelope]) -> None:
        for event in events:
            assert isinstance(event, ProjectConfigured)
            current = await self.collection.find_one({"_id": event.project}, {"guideline_version": 1})
            if current and current["guideline_version"] > event.guideline_version:
                continue
            doc = event.model_dump(mode="json")
            await self.collection.replace_one({"_id": event.project}, {"_id": event.project, **doc}, upsert=True)

    async def get(self, project: str) -> ProjectConfigured | None:
        if project in self._cache:
            return self._cache[project]
        doc = await self.collection.find_one({"_id": project})
        if doc is None:
            return None
        doc.pop("_id")
        config = ProjectConfigured.model_validate(doc)
        self._remember(config)
        return self._cache[project]

    async def require(self, event: Envelope) -> ProjectConfigured:
        """The event's project, waiting briefly because topics are not ordered with each other.

        The wait is counted from the first time the project was asked for, so a run of events for a project
        that never comes costs one wait, not one per event.
        """
        config = await self.get(event.project)
        if config is not None:
            return config
        loop = asyncio.get_running_loop()
        deadline = self._missing_since.setdefault(event.project, loop.time()) + self.wait_s
        while loop.time() < deadline:
            await asyncio.sleep(0.25)
            config = await self.get(event.project)
            if config is not None:
                return config
        raise PoisonEvent(event, f"unknown project {event.project!r}")
