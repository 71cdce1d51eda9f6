"""Versioned snapshots of final labels: rows, content hashes, manifest, and JSONL / Parquet / Label Studio files.

No database here: `services/trainer/exporter.py` reads the trainer's collections and hands the rows in.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from labelmesh.ml.head import TrainedHead
from services.trainer.domain.lineage import training_set_version

MANIFEST_FORMAT = "labelmesh.export"
MANIFEST_VERSION = 1
# Label Studio control and object names used in the tasks and in the labelling config written beside them.
LS_FROM_NAME, LS_TO_NAME = "label", "text"


class ExportFormat(StrEnum):
    JSONL = "jsonl"
    PARQUET = "parquet"
    LABEL_STUDIO = "label-studio"


FILE_NAMES = {ExportFormat.JSONL: "data.jsonl", ExportFormat.PARQUET: "data.parquet",
              ExportFormat.LABEL_STUDIO: "label_studio.json"}
LS_CONFIG_NAME = "label_studio_config.xml"


@dataclass(frozen=True)
class ExportRow:
    """One item's final label, as exported (one JSONL line, one Parquet row, one Label Studio task)."""

    item_id: str
    text: str | None
    label: str
    label_version: int
    provenance: str | None
    guideline_version: int | None
    split: str  # train | holdout | golden: how the trainer used the item
    model_version: int | None  # the champion whose prediction is below
    model_label: str | None
    model_score: float | None


def split_of(example: Mapping[str, Any]) -> str:
    if example.get("golden"):
        return "golden"
    return "holdout" if example.get("holdout") else "train"


def build_rows(examples: Sequence[Mapping[str, Any]], texts: Mapping[str, str],
               model: TrainedHead | None = None, model_version: int | None = None) -> list[ExportRow]:
    """Rows from the trainer's example docs, with the model's top label and probability where an embedding exists."""
    predictions: dict[int, tuple[str, float]] = {}
    if model is not None:
        # Only embeddings from the model's own encoder (an example without a recorded encoder is trusted).
        usable = [i for i, e in enumerate(examples)
                  if e.get("embedding") is not None and len(e["embedding"]) == 4 * model.dim
                  and e.get("encoder", model.encoder_name) == model.encoder_name]
        if usable:
            X = np.stack([np.frombuffer(examples[i]["embedding"], np.float32) for i in usable])
            probs = model.predict_proba(X)
            best = probs.argmax(axis=1)
            predictions = {i: (model.classes[j], round(float(probs[r, j]), 6))
                           for r, (i, j) in enumerate(zip(usable, best, strict=True))}
    out = []
    order = sorted(range(len(examples)), key=lambda i: examples[i]["item_id"])
    for i in order:
        e = examples[i]
        label, score = predictions.get(i, (None, None))
        out.append(ExportRow(
            item_id=e["item_id"], text=texts.get(e["item_id"]), label=e["label"], label_version=int(e["version"]),
            provenance=e.get("provenance"), guideline_version=e.get("guideline_version"), split=split_of(e),
            model_version=model_version if label is not None else None, model_label=label, model_score=score,
        ))
    return out


def labels_version(rows: Sequence[ExportRow]) -> str:
    """The same hash as a training set's version: equal iff the (item, label version, label) triples are equal."""
    return training_set_version((r.item_id, r.label_version, r.label) for r in rows)


def snapshot_version(rows: Sequence[ExportRow]) -> str:
    """sha256 over every exported field of every row (canonical JSON, sorted by item): the snapshot's identity."""
    digest = hashlib.sha256()
    for row in sorted(rows, key=lambda r: r.item_id):
        digest.update(json.dumps(asdict(row), sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def label_distribution(rows: Sequence[ExportRow]) -> dict[str, int]:
    return dict(sorted(Counter(r.label for r in rows).items(), key=lambda kv: (-kv[1], kv[0])))


def _counter(values: Sequence[Any]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(Counter(values).items(), key=lambda kv: str(kv[0]))}


def build_manifest(project: str, rows: Sequence[ExportRow], *, taxonomy: Sequence[str],
                   champion: Mapping[str, Any] | None, models: Sequence[Mapping[str, Any]],
                   created_at: str) -> dict[str, Any]:
    """What a consumer needs to trust and reuse the snapshot (files are added by `write_files`)."""
    return {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "project": project,
        "snapshot_version": snapshot_version(rows),
        "labels_version": labels_version(rows),
        "created_at": created_at,
        "counts": {
            "rows": len(rows),
            "with_text": sum(r.text is not None for r in rows),
            "with_prediction": sum(r.model_label is not None for r in rows),
            "split": _counter([r.split for r in rows]),
            "provenance": _counter([r.provenance for r in rows]),
            "label_versions": _counter([r.label_version for r in rows]),
        },
        "labels": list(taxonomy),
        "label_distribution": label_distribution(rows),
        "guideline_versions": _counter([r.guideline_version for r in rows]),
        "champion": None if champion is None else {
            "model_version": int(champion["version"]), "sha256": champion["sha256"],
            "training_set_version": champion["training_set_version"], "encoder": champion.get("encoder"),
            "metrics": champion.get("metrics", {}),
        },
        "models": [{"model_version": int(m["version"]), "promoted": bool(m.get("promoted")),
                    "training_set_version": m["training_set_version"], "sha256": m["sha256"]}
                   for m in sorted(models, key=lambda m: int(m["version"]))],
        "columns": [f.name for f in fields(ExportRow)],
        "files": [],
    }


def _parquet_schema():  # type: ignore[no-untyped-def]
    import pyarrow as pa

    return pa.schema([
        ("item_id", pa.string()), ("text", pa.string()), ("label", pa.string()), ("label_version", pa.int64()),
        ("provenance", pa.string()), ("guideline_version", pa.int64()), ("split", pa.string()),
        ("model_version", pa.int64()), ("model_label", pa.string()), ("model_score", pa.float64()),
    ])


def write_jsonl(rows: Sequence[ExportRow], path: Path) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")


def write_parquet(rows: Sequence[ExportRow], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema()
    table = pa.Table.from_pylist([asdict(r) for r in rows], schema=schema)
    pq.write_table(table, path)


def label_studio_task(row: ExportRow) -> dict[str, Any]:
    """Label Studio's JSON task: data, the final label as an annotation, the champion's guess as a prediction."""
    def choice(label: str) -> dict[str, Any]:
        return {"from_name": LS_FROM_NAME, "to_name": LS_TO_NAME, "type": "choices", "value": {"choices": [label]}}

    task: dict[str, Any] = {
        "data": {"text": row.text or "", "item_id": row.item_id, "label_version": row.label_version,
                 "provenance": row.provenance, "guideline_version": row.guideline_version, "split": row.split},
        "annotations": [{"result": [choice(row.label)], "ground_truth": row.split == "golden"}],
        "predictions": [],
    }
    if row.model_label is not None:
        task["predictions"].append({"model_version": f"v{row.model_version}", "score": row.model_score,
                                    "result": [choice(row.model_label) | {"score": row.model_score}]})
    return task


def label_studio_config(taxonomy: Sequence[str]) -> str:
    """A labelling config matching the tasks (single choice over the project's labels)."""
    from xml.sax.saxutils import quoteattr

    choices = "\n".join(f"    <Choice value={quoteattr(label)}/>" for label in taxonomy)
    return (f'<View>\n  <Text name="{LS_TO_NAME}" value="$text"/>\n'
            f'  <Choices name="{LS_FROM_NAME}" toName="{LS_TO_NAME}" choice="single">\n{choices}\n  </Choices>\n'
            f"</View>\n")


def write_label_studio(rows: Sequence[ExportRow], path: Path, taxonomy: Sequence[str]) -> None:
    # One task per line: a JSON array Label Studio imports as is, compact yet diffable.
    lines = ",\n".join(json.dumps(label_studio_task(r), ensure_ascii=False) for r in rows)
    path.write_text(f"[\n{lines}\n]\n", encoding="utf-8")
    (path.parent / LS_CONFIG_NAME).write_text(label_studio_config(taxonomy), encoding="utf-8")


def _file_entry(path: Path, fmt: str, rows: int) -> dict[str, Any]:
    data = path.read_bytes()
    return {"name": path.name, "format": fmt, "rows": rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_files(rows: Sequence[ExportRow], manifest: dict[str, Any], directory: Path,
                formats: Sequence[ExportFormat]) -> dict[str, Any]:
    """Write the data files and manifest.json into `directory`; returns the manifest with its file entries.

    Entries already in a manifest of the same snapshot there are kept, so formats can be exported in turns.
    """
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / "manifest.json"
    files: dict[str, dict[str, Any]] = {}
    if manifest_path.exists():
        previous = json.loads(manifest_path.read_text())
        if previous.get("snapshot_version") == manifest["snapshot_version"]:
            files = {f["name"]: f for f in previous.get("files", [])}
    taxonomy = manifest["labels"]
    for fmt in dict.fromkeys(ExportFormat(f) for f in formats):
        path = directory / FILE_NAMES[fmt]
        if fmt is ExportFormat.JSONL:
            write_jsonl(rows, path)
        elif fmt is ExportFormat.PARQUET:
            write_parquet(rows, path)
        else:
            write_label_studio(rows, path, taxonomy)
            files[LS_CONFIG_NAME] = _file_entry(directory / LS_CONFIG_NAME, "label-studio-config", 0)
        files[path.name] = _file_entry(path, fmt.value, len(rows))
    manifest = {**manifest, "files": sorted(files.values(), key=lambda f: f["name"])}
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest
