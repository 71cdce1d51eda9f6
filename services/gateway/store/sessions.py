"""Calibration sessions (`calibration_sessions`, `_id` = session id): their items, annotators and request."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from schemas.events import utcnow


def session_doc(session: str, project: str, item_ids: Sequence[str], annotators: Sequence[str],
                asked: Mapping[str, Any]) -> dict[str, Any]:
    return {"_id": session, "project": project, "item_ids": list(item_ids), "annotators": list(annotators),
            "request": dict(asked), "created_at": utcnow()}


class SessionStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.sessions = db["calibration_sessions"]

    async def get(self, session: str) -> dict[str, Any] | None:
        return await self.sessions.find_one({"_id": session})

    async def insert(self, doc: dict[str, Any]) -> bool:
        """False when a session with this id exists already (created concurrently)."""
        try:
            await self.sessions.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True
