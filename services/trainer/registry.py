"""The model registry's version numbers: taken by a unique `_id` (project/version), never by counting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError


def model_key(project: str, version: int) -> str:
    return f"{project}/{version}"


async def next_version(models: AsyncCollection, project: str) -> int:
    """One more than the project's highest registered version (a guess: register() settles who gets it)."""
    latest = await models.find_one({"project": project}, {"version": 1}, sort=[("version", -1)])
    return latest["version"] + 1 if latest else 1


async def register(models: AsyncCollection, project: str, fields: Callable[[int], dict[str, Any]], *,
                   version: int | None = None) -> int:
    """Store a model (`fields(version)`: what depends on its number is built for each try) under the first free
    version from `version` (default: next_version) and return that version.

    The insert is the claim: `_id` is unique, so two trainers (a mis-rollout; the trainer is meant to run
    alone, see TrainerSettings) can never both register version N; the loser moves to the next number.
    """
    version = version or await next_version(models, project)
    while True:
        try:
            await models.insert_one({"_id": model_key(project, version), "project": project, "version": version,
                                     **fields(version)})
            return version
        except DuplicateKeyError:
            version += 1
