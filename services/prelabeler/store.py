"""The prelabeler's model registry: every accepted model.updated, and the newest version per project."""

from __future__ import annotations

from collections.abc import AsyncIterator

from pymongo.asynchronous.database import AsyncDatabase

from schemas.events import ModelUpdated


class ModelStore:
    """Written only by the prelabeler's shared models group (model.updated has one partition, so one writer at a
    time); the newest version is raised with one atomic $max, so even a revoked writer still finishing a batch
    can never move it back."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.models = db["models"]
        self.active = db["active_models"]

    async def record(self, event: ModelUpdated) -> None:
        await self.models.replace_one(
            {"_id": f"{event.project}:{event.model_version}"},
            {"project": event.project, "version": event.model_version, "event": event.model_dump_json()},
            upsert=True,
        )
        await self.active.update_one({"_id": event.project}, {"$max": {"version": event.model_version}}, upsert=True)

    async def newest(self) -> AsyncIterator[ModelUpdated]:
        """Each project's newest stored model."""
        async for pointer in self.active.find():
            doc = await self.models.find_one({"_id": f"{pointer['_id']}:{pointer['version']}"})
            if doc is not None:
                yield ModelUpdated.model_validate_json(doc["event"])
