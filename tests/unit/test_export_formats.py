"""Export files read back: every format carries per-annotator labels, the final's confidence and provenance, the
model version and the metadata; the Hugging Face label is a ClassLabel."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from labelmesh.export_formats import write_export

LABELS = ["pos", "neg"]

EXPORTED = [{"item_id": "a", "text": "good", "label": "neg", "version": 2, "confidence": 0.9,
             "provenance": "consensus", "model_version": 2, "guideline_version": 1, "golden": False,
             "annotator_labels": [{"annotator_id": "ann", "label": "neg"}, {"annotator_id": "bob", "label": "pos"}],
             "metadata": {"year": "1999"}},
            {"item_id": "b", "text": "bad", "label": "pos", "version": 1, "confidence": 0.5, "provenance": "auto",
             "model_version": None, "guideline_version": None, "golden": False, "annotator_labels": [],
             "metadata": {}}]


def _same_row(row: dict, expected: dict) -> None:
    """A row read back carries per-annotator labels, the final's confidence, provenance and version, the model
    version and the metadata."""
    for key in ("item_id", "text", "version", "confidence", "provenance", "model_version", "annotator_labels"):
        assert row[key] == expected[key], key
    metadata = row["metadata"] if isinstance(row["metadata"], dict) else json.loads(row["metadata"])
    assert metadata == expected["metadata"]


def test_every_export_format_carries_what_a_row_must(tmp_path: Path) -> None:
    from datasets import load_from_disk

    write_export("jsonl", EXPORTED, LABELS, tmp_path / "d.jsonl")
    for row, expected in zip([json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()], EXPORTED,
                             strict=True):
        _same_row(row, expected)
        assert row["label"] == expected["label"]
    write_export("parquet", EXPORTED, LABELS, tmp_path / "d.parquet")
    for row, expected in zip(pq.read_table(tmp_path / "d.parquet").to_pylist(), EXPORTED, strict=True):
        _same_row(row, expected)
    write_export("hf", EXPORTED, LABELS, tmp_path / "hf")
    train = load_from_disk(str(tmp_path / "hf"))["train"]
    assert train.features["label"].names == LABELS and [r["label"] for r in train] == [1, 0]
    for row, expected in zip(train, EXPORTED, strict=True):
        _same_row(row, expected)
    write_export("label-studio", EXPORTED, LABELS, tmp_path / "ls.json")
    for task, expected in zip(json.loads((tmp_path / "ls.json").read_text()), EXPORTED, strict=True):
        [annotation] = task["annotations"]
        assert annotation["result"][0]["value"]["choices"] == [expected["label"]]
        assert task["data"] == {"text": expected["text"], "item_id": expected["item_id"], **expected["metadata"]}
        assert (annotation["meta"]["confidence"], annotation["meta"]["provenance"]) == (
            expected["confidence"], expected["provenance"])
        assert annotation["meta"]["annotator_labels"] == expected["annotator_labels"]
        assert task["meta"]["model_version"] == expected["model_version"]


def test_a_metadata_column_named_text_does_not_replace_the_text_of_a_label_studio_task(tmp_path: Path) -> None:
    row = {**EXPORTED[0], "metadata": {"text": "the file's other text column", "item_id": "x", "year": "1999"}}
    write_export("label-studio", [row], LABELS, tmp_path / "ls.json")
    [task] = json.loads((tmp_path / "ls.json").read_text())
    assert task["data"] == {"text": "good", "item_id": "a", "metadata.text": "the file's other text column",
                            "metadata.item_id": "x", "year": "1999"}
