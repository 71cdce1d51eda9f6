"""Each service's own copy of the project catalogue, learned from project.configured events."""

from __future__ import annotations

import asyncio

from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.bus import EventBus, PoisonEvent
from schemas.events import Envelope, ProjectConfigured


class ProjectCatalog:
    """Latest configuration per project; kept in the owning service's database so restarts need no replay."""

    def __init__(self, db: AsyncDatabase, wait_s: float = 15.0) -> None:
        self.collection = db["projects"]
        self.wait_s = wait_s
        self._cache: dict[str, ProjectConfigured] = {}

    def attach(self, bus: EventBus) -> None:
        # Not exclusive: other handlers wait for a project they do not know yet, and only this one writes it.
        bus.subscribe([ProjectConfigured.TOPIC], self.handle, name=f"{bus.service}.projects", exclusive=False)

    async def handle(self, events: list[Envelope]) -> None:
        for event in events:
            assert isinstance(event, ProjectConfigured)
            current = await self.collection.find_one({"_id": event.project})
            if current and current["guideline_version"] > event.guideline_version:
                continue
            doc = event.model_dump(mode="json")
            await self.collection.replace_one({"_id": event.project}, {"_id": event.project, **doc}, upsert=True)
            self._cache[event.project] = event

    async def get(self, project: str) -> ProjectConfigured | None:
        if project in self._cache:
            return self._cache[project]
        doc = await self.collection.find_one({"_id": project})
        if doc is None:
            return None
        doc.pop("_id")
        config = ProjectConfigured.model_validate(doc)
        self._cache[project] = config
        return config

    async def require(self, event: Envelope) -> ProjectConfigured:
        """The event's project, waiting briefly because topics are not ordered with each other."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while True:
            config = await self.get(event.project)
            if config is not None:
                return config
            if loop.time() >= deadline:
                raise PoisonEvent(event, f"unknown project {event.project!r}")
            await asyncio.sleep(0.25)
