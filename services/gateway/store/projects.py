"""Projects as configured (`projects`, `_id` = project) and every guideline version kept for good (`guidelines`)."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from schemas.events import ProjectConfigured, utcnow


def guideline_key(project: str, version: int) -> str:
    return f"{project}/{version}"


class ProjectStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.projects = db["projects"]
        self.guidelines = db["guidelines"]

    async def get(self, project: str) -> dict[str, Any] | None:
        return await self.projects.find_one({"_id": project})

    async def replace(self, event: ProjectConfigured) -> None:
        """The project as the event configures it; it names the event (event_id), which the relay checks."""
        await self.projects.replace_one(
            {"_id": event.project},
            {"labels": list(event.labels), "guidelines": event.guidelines,
             "guideline_version": event.guideline_version, "multi_annotators": event.multi_annotators,
             "target_auto_error": event.target_auto_error, "event_id": event.event_id,
             "task": event.task.value},
            upsert=True,
        )

    async def holds(self, event: ProjectConfigured) -> bool:
        """Whether the project is stored with this configuration (not none, and not a later one)."""
        doc = await self.projects.find_one({"_id": event.project}, {"event_id": 1})
        return doc is not None and doc.get("event_id") == event.event_id

    async def keep_guideline_version(self, event: ProjectConfigured) -> None:
        """The event's guideline version, kept for good (the first text stored under a version stays)."""
        await self.guidelines.update_one(
            {"_id": guideline_key(event.project, event.guideline_version)},
            {"$setOnInsert": {"project": event.project, "version": event.guideline_version, "text": event.guidelines,
                              "labels": list(event.labels), "at": utcnow()}},
            upsert=True,
        )

    async def guideline_version(self, project: str, version: int) -> dict[str, Any] | None:
        return await self.guidelines.find_one({"_id": guideline_key(project, version)})

    async def page(self, after: str, size: int) -> list[dict[str, Any]]:
        """Up to `size` projects by `_id` after `after` ("" from the start)."""
        query = {"_id": {"$gt": after}} if after else {}
        return [d async for d in self.projects.find(query, sort=[("_id", 1)], limit=size)]
