"""Submissions (`submissions`, `_id` = annotator/idempotency key): the lease, the label and the event to publish."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.mongo import bulk_write, insert_new
from schemas.events import LabelSubmitted
from schemas.spans import answer_key
from services.gateway.coalesce import ByIds


def submission_doc(sub_id: str, lease_id: str, label: str, event: LabelSubmitted) -> dict[str, Any]:
    """`spans` (a spans project's answer_key) lets a retry be told from another submission under the same key."""
    return {"_id": sub_id, "lease_id": lease_id, "label": label, "event": event.model_dump_json(), "published": False,
            **({"spans": answer_key(event.spans)} if event.spans is not None else {})}


def event_of(doc: dict[str, Any]) -> LabelSubmitted:
    return LabelSubmitted.model_validate_json(doc["event"])


class SubmissionStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.submissions = db["submissions"]
        self._reads = ByIds(self.submissions)  # concurrent SubmitLabels' lookups as one query

    async def get(self, sub_id: str) -> dict[str, Any] | None:
        return await self._reads.one(sub_id)

    async def published(self, sub_id: str) -> bool | None:
        """Whether the submission was published; None when it is not stored."""
        doc = await self.submissions.find_one({"_id": sub_id}, {"published": 1})
        return None if doc is None else bool(doc.get("published"))

    async def insert_new(self, docs: Sequence[dict[str, Any]]) -> list[int]:
        """The positions of the documents whose `_id` was already stored (a retry or a concurrent twin)."""
        return await insert_new(self.submissions, list(docs))

    async def mark_published(self, sub_ids: Sequence[str]) -> None:
        await bulk_write(self.submissions, [UpdateOne({"_id": i}, {"$set": {"published": True}}) for i in sub_ids],
                         ordered=False)
