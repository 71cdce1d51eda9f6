"""Writing exported final labels as JSON lines, Parquet, a Hugging Face DatasetDict or Label Studio tasks; a spans
project's also as CoNLL, with `tokens` and `ner_tags` (BIO over the span model's words) in the Hugging Face one."""

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


def bio_tags(entity_types: list[str]) -> list[str]:
    """A spans project's BIO tag names, O first: the ClassLabel of `ner_tags`."""
    return ["O", *(f"{p}-{t}" for t in entity_types for p in ("B", "I"))]


def tokens_and_tags(row: dict[str, Any]) -> tuple[list[str], list[str]]:
    """A spans row's words (the span model's whitespace tokens) and their BIO tags."""
    from labelmesh.ml.spans import spans_to_bio, words
    from schemas.spans import Span

    offsets = words(row["text"])
    spans = [Span(start=s["start"], end=s["end"], label=s["label"]) for s in row["spans"]]
    return [row["text"][a:b] for a, b in offsets], spans_to_bio(offsets, spans)


def label_studio_span_tasks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Label Studio tasks for a spans project: the final spans as a `Labels` annotation (from_name `label`)."""
    return [{
        "data": {"text": r["text"], "item_id": r["item_id"], **r["metadata"]},
        "annotations": [{"result": [{"from_name": "label", "to_name": "text", "type": "labels",
                                     "value": {"start": s["start"], "end": s["end"], "text": s["text"],
                                               "labels": [s["label"]]}} for s in r["spans"]],
                         "meta": {"provenance": r["provenance"], "confidence": r["confidence"],
                                  "version": r["version"]}}],
        "meta": {"model_version": r["model_version"]},
    } for r in rows]


def write_spans_export(kind: str, rows: list[dict[str, Any]], entity_types: list[str], out: Path) -> bool:
    """The spans-only forms (CoNLL, HF tokens/ner_tags, Label Studio Labels); False for a kind both share."""
    if kind == "conll":
        with out.open("w", encoding="utf-8") as handle:
            for row in rows:
                for token, tag in zip(*tokens_and_tags(row), strict=True):
                    handle.write(f"{token}\t{tag}\n")
                handle.write("\n")
    elif kind == "hf":
        from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

        features = Features({
            "item_id": Value("string"), "text": Value("string"), "tokens": Sequence(Value("string")),
            "ner_tags": Sequence(ClassLabel(names=bio_tags(entity_types))), "version": Value("int32"),
            "confidence": Value("float64"), "provenance": Value("string"), "golden": Value("bool"),
        })
        data = []
        for row in rows:
            tokens, tags = tokens_and_tags(row)
            data.append({"item_id": row["item_id"], "text": row["text"], "tokens": tokens, "ner_tags": tags,
                         "version": row["version"], "confidence": row["confidence"],
                         "provenance": row["provenance"], "golden": row["golden"]})
        DatasetDict({"train": Dataset.from_list(data, features=features)}).save_to_disk(str(out))
    elif kind == "label-studio":
        out.write_text(json.dumps(label_studio_span_tasks(rows), ensure_ascii=False, indent=1), encoding="utf-8")
    else:
        return False
    return True


def write_export(kind: str, rows: list[dict[str, Any]], labels: list[str], out: Path) -> None:
    """`rows` of a spans project (each with `spans`) may also go to CoNLL; `labels` are then its entity types."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if rows and all("spans" in r for r in rows) and write_spans_export(kind, rows, labels, out):
        return
    if kind == "conll":
        raise ValueError("CoNLL is for spans projects' final labels")
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
