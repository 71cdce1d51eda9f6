"""Read-side of the trainer's database: lineage (which labels trained which model and back), champions, final labels.

Pure summaries come first (unit tested); the async readers below them only fetch documents and call them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gridfs import AsyncGridFSBucket
from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.ml.head import TrainedHead, sha256_hex
from schemas.keys import item_key
from services.trainer.domain.lineage import member_key
from services.trainer.registry import model_key

_IN_CHUNK = 1000  # ids per $in query: keeps each request small on FerretDB


class LineageError(LookupError):
    """The model, item or training set asked about does not exist (the message says which)."""


@dataclass(frozen=True)
class LabelVersion:
    item_id: str
    version: int
    label: str
    provenance: str | None
    guideline_version: int | None


@dataclass(frozen=True)
class ModelLineage:
    """Everything that went into one model version."""

    project: str
    model_version: int
    promoted: bool
    reason: str
    sha256: str
    training_set_version: str
    members: tuple[LabelVersion, ...]
    # Members named by the training set whose label version is not in label_versions (should stay empty).
    missing: tuple[str, ...]
    guideline_versions: dict[int | None, int] = field(default_factory=dict)
    label_distribution: dict[str, int] = field(default_factory=dict)
    provenance: dict[str | None, int] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelUsage:
    """One version of an item's final label and the models trained on exactly that version."""

    label: LabelVersion
    current: bool  # the latest version of the item's label
    superseded_by: int | None  # the next version when this one was corrected
    models: tuple[int, ...]  # model versions whose training set holds this label version
    promoted_models: tuple[int, ...]


def _label_version(doc: Mapping[str, Any]) -> LabelVersion:
    return LabelVersion(doc["item_id"], int(doc["version"]), doc["label"], doc.get("provenance"),
                        doc.get("guideline_version"))


def summarise_model(model: Mapping[str, Any], members: Iterable[str],
                    versions: Iterable[Mapping[str, Any]]) -> ModelLineage:
    """A model's lineage from its registry entry, its training set's member keys and the label_versions docs."""
    found = {member_key(d["item_id"], int(d["version"])): _label_version(d) for d in versions}
    keys = sorted(set(members))
    resolved = tuple(found[k] for k in keys if k in found)
    return ModelLineage(
        project=model["project"], model_version=int(model["version"]), promoted=bool(model.get("promoted")),
        reason=model.get("reason", ""), sha256=model.get("sha256", ""),
        training_set_version=model["training_set_version"], members=resolved,
        missing=tuple(k for k in keys if k not in found),
        guideline_versions=dict(sorted(Counter(v.guideline_version for v in resolved).items(),
                                       key=lambda kv: (kv[0] is None, kv[0] or 0))),
        label_distribution=dict(Counter(v.label for v in resolved).most_common()),
        provenance=dict(Counter(v.provenance for v in resolved).most_common()),
        metrics=dict(model.get("metrics", {})),
    )


def summarise_label(versions: Iterable[Mapping[str, Any]],
                    models_by_version: Mapping[int, Iterable[Mapping[str, Any]]]) -> list[LabelUsage]:
    """Per label version of one item (oldest first): is it current, what replaced it, which models used it."""
    ordered = sorted((_label_version(d) for d in versions), key=lambda v: v.version)
    usages = []
    for i, version in enumerate(ordered):
        models = sorted(models_by_version.get(version.version, ()), key=lambda m: int(m["version"]))
        usages.append(LabelUsage(
            label=version, current=i == len(ordered) - 1,
            superseded_by=ordered[i + 1].version if i + 1 < len(ordered) else None,
            models=tuple(int(m["version"]) for m in models),
            promoted_models=tuple(int(m["version"]) for m in models if m.get("promoted")),
        ))
    return usages


def _chunks(values: list[str], size: int = _IN_CHUNK) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


async def model_lineage(db: AsyncDatabase, project: str, version: int) -> ModelLineage:
    """Which label versions (and guideline versions) trained model `version` of `project`."""
    model = await db["models"].find_one({"_id": model_key(project, version)})
    if model is None:
        known = sorted([d["version"] async for d in db["models"].find({"project": project}, {"version": 1})])
        raise LineageError(f"project {project!r} has no model v{version} (known versions: {known or 'none'})")
    training_set = await db["training_sets"].find_one({"_id": model["training_set_version"]})
    if training_set is None:
        raise LineageError(f"training set {model['training_set_version']} of model v{version} is missing")
    members = list(training_set["members"])
    versions: list[dict[str, Any]] = []
    for chunk in _chunks([item_key(project, m) for m in members]):
        versions.extend([d async for d in db["label_versions"].find({"_id": {"$in": chunk}})])
    return summarise_model(model, members, versions)


async def label_lineage(db: AsyncDatabase, project: str, item_id: str) -> list[LabelUsage]:
    """Every version of an item's final label and the models trained on each (e.g. before it was corrected)."""
    versions = [d async for d in db["label_versions"].find({"project": project, "item_id": item_id})]
    if not versions:
        raise LineageError(f"project {project!r} has no final label for item {item_id!r}")
    models_by_version: dict[int, list[dict[str, Any]]] = {}
    for doc in versions:
        key = member_key(item_id, int(doc["version"]))
        sets = [d["_id"] async for d in db["training_sets"].find({"project": project, "members": key}, {"_id": 1})]
        if sets:
            models_by_version[int(doc["version"])] = [
                d async for d in db["models"].find({"project": project, "training_set_version": {"$in": sets}},
                                                    {"version": 1, "promoted": 1})
            ]
    return summarise_label(versions, models_by_version)


async def champion_version(db: AsyncDatabase, project: str) -> int | None:
    state = await db["train_state"].find_one({"_id": project})
    return None if state is None else state.get("champion")


async def load_model(db: AsyncDatabase, project: str, version: int) -> tuple[dict[str, Any], TrainedHead]:
    """A registered model's entry and its head, read from GridFS and checked against the recorded checksum."""
    doc = await db["models"].find_one({"_id": model_key(project, version)})
    if doc is None:
        raise LineageError(f"project {project!r} has no model v{version}")
    stream = await AsyncGridFSBucket(db, bucket_name="artifacts").open_download_stream(doc["artifact_id"])
    content = await stream.read()
    if sha256_hex(content) != doc["sha256"]:
        raise RuntimeError(f"stored artifact {project} v{version} fails its checksum")
    return doc, TrainedHead.from_bytes(content)


async def final_labels(db: AsyncDatabase, project: str) -> list[dict[str, Any]]:
    """The current final label of every item (with its embedding when one arrived), ordered by item id."""
    query = {"project": project, "label": {"$exists": True}}
    return [d async for d in db["examples"].find(query, sort=[("_id", 1)])]


async def item_texts(db: AsyncDatabase, project: str) -> dict[str, str]:
    return {d["item_id"]: d["text"] async for d in db["items"].find({"project": project}, {"item_id": 1, "text": 1})}
