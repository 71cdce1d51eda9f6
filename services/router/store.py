"""The router's documents to and from domain objects: thresholds per project (owned by the project's owner)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.mongo import find_by_ids
from schemas.events import ThresholdEvidence, Thresholds
from schemas.keys import item_key
from services.router.domain.evidence import ProjectLearning


def evidence_row(event: ThresholdEvidence) -> dict[str, Any]:
    """A verified pre-label as the learner reads it back; one row per item, so a re-finalised item replaces it."""
    return {"_id": item_key(event.project, str(event.item_id)), "project": event.project,
            "confidence": event.confidence, "correct": event.correct, "weight": event.weight,
            "model_version": event.model_version}


def _learning(doc: dict[str, Any] | None) -> ProjectLearning:
    if doc is None:
        return ProjectLearning()
    borders = Thresholds(auto_accept=doc["auto_accept"], single_review=doc["single_review"]) \
        if "auto_accept" in doc else None
    return ProjectLearning(borders, int(doc.get("unlearned", 0)), doc.get("applied"))


class ThresholdStore:
    """`thresholds`: one document per project, `_id` the project, written only by the replica that owns the
    project's partition of threshold.evidence; every replica reads it by `_id` to route."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.collection = db["thresholds"]

    async def load(self, project: str) -> ProjectLearning:
        return _learning(await self.collection.find_one({"_id": project}))

    async def load_many(self, projects: Iterable[str]) -> dict[str, ProjectLearning]:
        return {doc["_id"]: _learning(doc) for doc in await find_by_ids(self.collection, sorted(set(projects)))}

    async def load_all(self) -> dict[str, ProjectLearning]:
        return {doc["_id"]: _learning(doc) async for doc in self.collection.find()}

    async def save(self, project: str, state: ProjectLearning) -> None:
        doc: dict[str, Any] = {"unlearned": state.unlearned, "applied": state.applied}
        if state.thresholds is not None:
            doc |= state.thresholds.model_dump()
        await self.collection.replace_one({"_id": project}, doc, upsert=True)
