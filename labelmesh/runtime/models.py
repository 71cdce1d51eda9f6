"""A service's own registry of the models announced on model.updated: each version's event by `_id`, and a pointer
per project to the newest, raised with one atomic `$max` so that even a revoked writer still finishing a batch can
never move it back.

The prelabeler keeps one to serve its newest models at start, the router one to re-score with each project's
champion (services/router/champion.py). In each, only the shared group that reads model.updated writes it:
model.updated has one partition, so one replica at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.mongo import find_by_ids
from schemas.events import ModelUpdated


class ModelRegistry:
    def __init__(self, db: AsyncDatabase, pointers: str = "active_models") -> None:
        self.models = db["models"]
        self.pointers = db[pointers]

    async def record(self, event: ModelUpdated) -> None:
        """The model first, then the pointer: whoever reads the pointer finds the model."""
        await self.models.replace_one(
            {"_id": f"{event.project}:{event.model_version}"},
            {"project": event.project, "version": event.model_version, "event": event.model_dump_json()},
            upsert=True,
        )
        await self.pointers.update_one({"_id": event.project}, {"$max": {"version": event.model_version}},
                                       upsert=True)

    async def versions(self, projects: Iterable[str]) -> dict[str, int]:
        """These projects' newest versions (projects without a model left out)."""
        return {d["_id"]: int(d["version"]) for d in await find_by_ids(self.pointers, sorted(set(projects)))}

    async def load(self, project: str, version: int) -> ModelUpdated | None:
        doc = await self.models.find_one({"_id": f"{project}:{version}"})
        return None if doc is None else ModelUpdated.model_validate_json(doc["event"])

    async def newest(self) -> AsyncIterator[ModelUpdated]:
        """Each project's newest stored model."""
        async for pointer in self.pointers.find():
            event = await self.load(pointer["_id"], int(pointer["version"]))
            if event is not None:
                yield event
