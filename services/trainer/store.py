"""The trainer's documents: examples and their label history, training state, training sets, artifacts and models.

The trainer is one process (TrainerSettings says why); what stays correct with two anyway is kept here: a model
version is claimed by inserting its unique `_id` (services/trainer/registry.py), a champion only moves forward
(`$max`), a content-addressed training set is inserted if absent, and upserts of one new `_id` survive the insert
race (labelmesh.runtime.mongo.upsert_by_id).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from gridfs import AsyncGridFSBucket
from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.ml.head import TrainedHead, sha256_hex
from labelmesh.ml.spans import SpanTagger
from labelmesh.runtime.mongo import find_by_ids, insert_new, upsert_by_id, upsert_many
from schemas.events import utcnow
from services.trainer.domain.examples import ExampleChanges
from services.trainer.domain.lineage import member_key
from services.trainer.domain.training import TrainingData
from services.trainer.registry import model_key, register

_USABLE = {"label": {"$exists": True}, "embedding": {"$exists": True}}


class ExampleStore:
    """`examples` (one per item: embedding and newest final label) and `label_versions` (every accepted version)."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.examples = db["examples"]
        self.label_versions = db["label_versions"]

    async def label_versions_of(self, keys: Sequence[str]) -> dict[str, int]:
        """The label version stored per example key. Read by id: FerretDB 1.24 stalls on $or filters in updates,
        so "newer version only" is decided by the domain rather than in the update's filter."""
        return {d["_id"]: d.get("version", 0) for d in await find_by_ids(self.examples, keys, {"version": 1})}

    async def apply(self, changes: ExampleChanges) -> set[str]:
        """Store the changes; returns the projects of examples that existed before (their count may have
        changed: an embedding for an example whose label came first)."""
        docs = [{"_id": key, **fields} for key, fields in changes.fields.items()]
        existed = await upsert_many(self.examples, docs, merge=True)
        await upsert_many(self.label_versions,
                          [{"_id": v["key"], **{k: x for k, x in v.items() if k != "key"}} for v in changes.versions])
        return {docs[i]["project"] for i in existed}

    async def projects(self) -> list[str]:
        return await self.examples.distinct("project")

    async def count_usable(self, project: str) -> int:
        """Labelled examples with an embedding that are trained on (not held out)."""
        return await self.examples.count_documents({"project": project, **_USABLE, "holdout": False})

    async def usable(self, project: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The project's labelled examples with an embedding, (trained on, held out), each ordered by _id.

        One query, split here: FerretDB scans the whole collection for each (bench/results/retrain_time.json).
        """
        docs = [d async for d in self.examples.find({"project": project, **_USABLE}, sort=[("_id", 1)])]
        return [d for d in docs if d.get("holdout") is False], [d for d in docs if d.get("holdout") is True]


class TrainStateStore:
    """`train_state`, one per project: labels available and trained on, and the champion version."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.states = db["train_state"]

    async def get(self, project: str) -> dict[str, Any]:
        return {"trained_on": 0, "champion": None, **(await self.states.find_one({"_id": project}) or {})}

    async def set_available(self, project: str, n: int) -> None:
        await upsert_by_id(self.states, project, {"$set": {"available": n}})

    async def trained(self, project: str, trained_on: int, champion: int | None) -> None:
        """`champion`: the newly promoted version, or None to keep the one in force. $max: a champion is never
        replaced by an older version, whatever order two trainers finish in."""
        await upsert_by_id(self.states, project, {"$set": {"trained_on": trained_on},
                                                  **({"$max": {"champion": champion}} if champion else {})})

    def with_champion(self) -> AsyncIterator[dict[str, Any]]:
        return self.states.find({"champion": {"$exists": True}})

    def all(self) -> AsyncIterator[dict[str, Any]]:
        return self.states.find()


class ModelStore:
    """Training sets, artifacts (GridFS) and the model registry (`models`, versions claimed by unique `_id`)."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.db_name = db.name
        self.training_sets = db["training_sets"]
        self.models = db["models"]
        self.artifacts = AsyncGridFSBucket(db, bucket_name="artifacts")

    async def record_training_set(self, project: str, data: TrainingData) -> str:
        """Content-addressed, so one already there is this one: an insert that leaves an existing id alone (two
        upserts of one new _id at once can both try to insert, and one fails with a duplicate key)."""
        version = data.version
        await insert_new(self.training_sets, [
            {"_id": version, "project": project, "size": len(data.members), "created_at": utcnow(),
             "members": [member_key(i, v) for i, v, _ in data.members],
             "guideline_versions": data.guideline_versions}])
        return version

    async def upload(self, project: str, training_set: str, content: bytes) -> tuple[Any, str]:
        """The artifact's file id and its URI. Named after what it was trained on, not its version: the version is
        known only once registered."""
        file_id = await self.artifacts.upload_from_stream(
            f"{project}-{training_set}.npz", content,
            metadata={"project": project, "training_set_version": training_set, "sha256": sha256_hex(content)},
        )
        return file_id, f"gridfs://{self.db_name}/artifacts/{file_id}"

    async def download(self, file_id: Any) -> bytes:
        stream = await self.artifacts.open_download_stream(file_id)
        return await stream.read()

    async def register(self, project: str, fields: Callable[[int], dict[str, Any]]) -> int:
        return await register(self.models, project, fields)

    async def get(self, project: str, version: int) -> dict[str, Any] | None:
        return await self.models.find_one({"_id": model_key(project, version)})

    async def mark_published(self, model_id: str) -> None:
        await self.models.update_one({"_id": model_id}, {"$set": {"published": True}})

    async def load(self, project: str, version: int) -> TrainedHead:
        return TrainedHead.from_bytes(await self.artifact(project, version))

    async def load_tagger(self, project: str, version: int) -> SpanTagger:
        return SpanTagger.from_bytes(await self.artifact(project, version))

    async def artifact(self, project: str, version: int) -> bytes:
        doc = await self.get(project, version)
        content = await self.download(doc["artifact_id"])
        if sha256_hex(content) != doc["sha256"]:
            raise RuntimeError(f"stored artifact {project} v{version} fails its checksum")
        return content
