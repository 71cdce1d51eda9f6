"""Writing exported final labels as JSON lines, Parquet, a Hugging Face DatasetDict or Label Studio tasks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """Columnar formats keep metadata as a JSON string: files mix columns, and a schema must be one per file."""
    return {**row, "metadata": json.dumps(row["metadata"], sort_keys=True)}


RESERVED_DATA = ("text", "item_id")


def _task_data(row: dict[str, Any]) -> dict[str, Any]:
    """The item's text and id, and its metadata beside them; a metadata column named text or item_id (a file whose
    --text-column was another) is kept as metadata.text or metadata.item_id rather than replacing them."""
    metadata = {f"metadata.{k}" if k in RESERVED_DATA else k: v for k, v in row["metadata"].items()}
    return {**metadata, "text": row["text"], "item_id": row["item_id"]}


def label_studio_tasks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Label Studio tasks (Choices control named `label` over `text`): the final label as an annotation."""
    return [{
        "data": _task_data(r),
        "annotations": [{"result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                     "value": {"choices": [r["label"]]}}],
                         "meta": {"provenance": r["provenance"], "confidence": r["confidence"],
                                  "version": r["version"], "annotator_labels": r["annotator_labels"]}}],
        "meta": {"model_version": r["model_version"]},
    } for r in rows]


def write_export(kind: str, rows: list[dict[str, Any]], labels: list[str], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == "jsonl":
        with out.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist([_flat(r) for r in rows]), out)
    elif kind == "label-studio":
        out.write_text(json.dumps(label_studio_tasks(rows), ensure_ascii=False, indent=1), encoding="utf-8")
    elif kind == "hf":
        from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

        features = Features({
            "item_id": Value("string"), "text": Value("string"), "label": ClassLabel(names=labels),
            "version": Value("int32"), "confidence": Value("float64"), "provenance": Value("string"),
            "model_version": Value("int32"), "guideline_version": Value("int32"), "golden": Value("bool"),
            "annotator_labels": [{"annotator_id": Value("string"), "label": Value("string")}],
            "metadata": Value("string"),
        })
        data = [_flat(r) for r in rows]
        DatasetDict({"train": Dataset.from_list(data, features=features)}).save_to_disk(str(out))
    else:
        raise ValueError(f"unknown export format {kind!r}")
