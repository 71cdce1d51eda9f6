"""Export a project's final labels from the trainer's own database into a versioned snapshot directory."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from schemas.events import utcnow
from services.trainer.exports import ExportFormat, build_manifest, build_rows, write_files
from services.trainer.queries import LineageError, champion_version, final_labels, item_texts, load_model


async def export_project(db: AsyncDatabase, project: str, out: Path,
                         formats: Sequence[ExportFormat]) -> tuple[Path, dict[str, Any]]:
    """Write the snapshot under out/<project>-<snapshot[:12]>/ and record its manifest in `exports`."""
    examples = await final_labels(db, project)
    if not examples:
        raise LineageError(f"project {project!r} has no final labels in this trainer database")
    config = await db["projects"].find_one({"_id": project})
    taxonomy = list(config["labels"]) if config else sorted({e["label"] for e in examples})
    version = await champion_version(db, project)
    champion, head = (None, None) if version is None else await load_model(db, project, version)
    rows = build_rows(examples, await item_texts(db, project), head, version)
    models = [m async for m in db["models"].find({"project": project}, {"artifact_id": 0})]
    manifest = build_manifest(project, rows, taxonomy=taxonomy, champion=champion, models=models,
                              created_at=utcnow().isoformat())
    directory = out / f"{project}-{manifest['snapshot_version'][:12]}"
    manifest = write_files(rows, manifest, directory, formats)
    # The manifest as a JSON string: label names become keys there, and a database key may not hold '.' or '$'.
    await db["exports"].replace_one(
        {"_id": f"{project}/{manifest['snapshot_version']}"},
        {"project": project, "snapshot_version": manifest["snapshot_version"],
         "labels_version": manifest["labels_version"], "rows": len(rows), "created_at": utcnow(),
         "champion": version, "formats": [f["format"] for f in manifest["files"]],
         "manifest_json": json.dumps(manifest, sort_keys=True)},
        upsert=True,
    )
    return directory, manifest
