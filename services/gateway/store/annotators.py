"""Annotators (`annotators`, `_id` = annotator id): role, projects, token hash, expiry, suspension, revocation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from schemas.events import utcnow
from services.gateway.auth import Role, new_token
from services.gateway.domain.calibration import Annotator


class AnnotatorStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.annotators = db["annotators"]

    async def ensure_indexes(self) -> None:
        await self.annotators.create_index("token_sha256", unique=True)

    async def by_token(self, token_sha256: str) -> dict[str, Any] | None:
        """The annotator holding this token: one lookup on the unique token index. A revoked or rotated token is
        no longer any annotator's token_sha256, so it finds nobody."""
        return await self.annotators.find_one({"token_sha256": token_sha256})

    async def get(self, annotator_id: str) -> dict[str, Any] | None:
        return await self.annotators.find_one({"_id": annotator_id})

    async def issue(self, annotator_id: str, role: Role, projects: Sequence[str], token_sha256: str,
                    expires_unix_ms: int | None) -> None:
        """New credentials. They replace the token, role and projects, never the record: a suspension qc decided
        stays until qc lifts it ($setOnInsert), whoever issues credentials again."""
        await self.annotators.update_one(
            {"_id": annotator_id},
            {"$set": {"role": role.value, "token_sha256": token_sha256, "projects": list(projects), "revoked": False,
                      "expires_unix_ms": expires_unix_ms},
             "$setOnInsert": {"created_at": utcnow(), "suspended": False}},
            upsert=True,
        )

    async def suspend(self, annotator_id: str) -> None:
        await self.annotators.update_one({"_id": annotator_id}, {"$set": {"suspended": True}})

    async def revoke(self, annotator_id: str) -> dict[str, Any]:
        """Give the annotator a token hash nobody can present: they stay on record, and no token finds them.
        Returns the fields set."""
        update = {"token_sha256": f"revoked:{new_token()}", "revoked": True, "revoked_at": utcnow()}
        await self.annotators.update_one({"_id": annotator_id}, {"$set": update})
        return update

    async def rotate(self, annotator_id: str, token_sha256: str) -> None:
        await self.annotators.update_one({"_id": annotator_id}, {"$set": {"token_sha256": token_sha256,
                                                                          "revoked": False}})

    async def known(self) -> dict[str, Annotator]:
        """Every annotator's role and suspension, by id."""
        return {d["_id"]: Annotator(d["_id"], d["role"], bool(d.get("suspended")))
                async for d in self.annotators.find({}, {"role": 1, "suspended": 1})}

    async def page(self, after: str, size: int) -> list[dict[str, Any]]:
        """Up to `size` annotators by `_id` after `after` ("" from the start), without their token hashes."""
        query = {"_id": {"$gt": after}} if after else {}
        return [d async for d in self.annotators.find(query, {"token_sha256": 0}, sort=[("_id", 1)], limit=size)]
