"""The router's documents to and from domain objects: thresholds per project (owned by the project's owner), and
the queued decisions a lowered auto border promotes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.mongo import find_by_ids, upsert_many
from schemas.events import ItemRouted, ThresholdEvidence, Thresholds
from schemas.keys import item_key
from services.router.domain.evidence import ProjectLearning
from services.router.domain.promote import PROMOTABLE


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


class PromotionStore:
    """Reads the item owners' `decisions` and `items` (never writes them) and records promotions in `reroutes`.

    A promotion is a second routing decision, like a flag's re-route, and is kept the same way: its own document,
    `_id` its event id, written by the project's threshold owner, so `decisions` keeps its one writer per item.
    """

    def __init__(self, db: AsyncDatabase) -> None:
        self.decisions = db["decisions"]
        self.items = db["items"]
        self.reroutes = db["reroutes"]

    async def queued(self, project: str) -> list[ItemRouted]:
        """The project's first decisions that sent an item to people, for items with no final label and no second
        decision yet (a flag's re-route or an earlier promotion). Three reads per sweep, none per item."""
        finalised = {d["_id"] async for d in self.items.find({"project": project, "label": {"$exists": True}},
                                                             {"_id": 1})}
        rerouted = {d["item_id"] async for d in self.reroutes.find({"project": project}, {"item_id": 1})}
        out = []
        async for doc in self.decisions.find({"project": project, "tier": {"$in": [t.value for t in PROMOTABLE]}}):
            if doc["_id"] in finalised or doc.get("item_id") in rerouted:
                continue
            doc.pop("_id")
            out.append(ItemRouted.model_validate(doc))
        return out

    async def record(self, promoted: list[ItemRouted]) -> None:
        await upsert_many(self.reroutes, [{"_id": r.event_id, **r.model_dump(mode="json")} for r in promoted])
