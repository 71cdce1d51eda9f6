"""Export snapshots (rows, hashes, manifest, JSONL / Parquet / Label Studio files) and lineage summaries."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from labelmesh.ml.head import train_head
from services.trainer.exports import (
    ExportFormat,
    build_manifest,
    build_rows,
    label_studio_task,
    labels_version,
    snapshot_version,
    write_files,
)
from services.trainer.domain.lineage import training_set_version
from services.trainer.queries import summarise_label, summarise_model

TAXONOMY = ("alpha", "beta", "gamma")


def _head():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8, dtype=np.float32)
    y = [TAXONOMY[i % 3] for i in range(60)]
    X = np.stack([centres[i % 3] + 0.05 * rng.standard_normal(8).astype(np.float32) for i in range(60)])
    return train_head(X, y, encoder_name="toy", classes=TAXONOMY, cv_folds=3), centres


def _examples(centres: np.ndarray) -> list[dict]:
    return [
        {"item_id": "b", "label": "beta", "version": 2, "provenance": "corrected", "guideline_version": 2,
         "golden": False, "holdout": False, "embedding": centres[1].tobytes()},
        {"item_id": "a", "label": "alpha", "version": 1, "provenance": "auto", "guideline_version": 1,
         "golden": False, "holdout": True, "embedding": centres[0].tobytes()},
        {"item_id": "c", "label": "gamma", "version": 1, "provenance": "consensus", "guideline_version": 1,
         "golden": True, "holdout": True},  # no embedding yet: no prediction
    ]


@pytest.fixture(scope="module")
def rows():  # type: ignore[no-untyped-def]
    head, centres = _head()
    return build_rows(_examples(centres), {"a": "first text", "b": "second ✓"}, head, 4)


def test_rows_carry_labels_splits_and_the_champions_prediction(rows) -> None:  # type: ignore[no-untyped-def]
    assert [r.item_id for r in rows] == ["a", "b", "c"]
    a, b, c = rows
    assert (a.split, b.split, c.split) == ("holdout", "train", "golden")
    assert (a.model_label, b.model_label, a.model_version) == ("alpha", "beta", 4)
    assert 0.5 < a.model_score <= 1.0
    assert c.model_label is None and c.model_score is None and c.model_version is None and c.text is None
    assert b.label_version == 2 and b.guideline_version == 2 and b.text == "second ✓"


def test_no_prediction_from_another_encoders_embedding() -> None:
    head, centres = _head()
    examples = _examples(centres)
    examples[0]["encoder"] = "some-other-encoder"
    rows = build_rows(examples, {}, head, 4)
    assert rows[1].item_id == "b" and rows[1].model_label is None and rows[0].model_label == "alpha"


def test_versions_are_content_hashes(rows) -> None:  # type: ignore[no-untyped-def]
    assert snapshot_version(rows) == snapshot_version(list(reversed(rows)))
    assert labels_version(rows) == training_set_version([("a", 1, "alpha"), ("b", 2, "beta"), ("c", 1, "gamma")])
    changed = [rows[0], rows[1].__class__(**{**rows[1].__dict__, "label": "gamma"}), rows[2]]
    assert snapshot_version(changed) != snapshot_version(rows)
    assert labels_version(changed) != labels_version(rows)


def _manifest(rows):  # type: ignore[no-untyped-def]
    models = [{"version": 4, "promoted": True, "training_set_version": "t4", "sha256": "f" * 64},
              {"version": 3, "promoted": False, "training_set_version": "t3", "sha256": "e" * 64}]
    return build_manifest("p", rows, taxonomy=TAXONOMY, champion=models[0] | {"metrics": {"heldout_accuracy": 0.9}},
                          models=models, created_at="2026-01-01T00:00:00+00:00")


def test_manifest_counts_distribution_and_models(rows) -> None:  # type: ignore[no-untyped-def]
    m = _manifest(rows)
    assert m["counts"]["rows"] == 3 and m["counts"]["with_text"] == 2 and m["counts"]["with_prediction"] == 2
    assert m["counts"]["split"] == {"golden": 1, "holdout": 1, "train": 1}
    assert m["label_distribution"] == {"alpha": 1, "beta": 1, "gamma": 1}
    assert m["guideline_versions"] == {"1": 2, "2": 1}
    assert m["champion"]["model_version"] == 4 and [x["model_version"] for x in m["models"]] == [3, 4]


def test_files_load_with_hugging_face_datasets(rows, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import datasets

    manifest = write_files(rows, _manifest(rows), tmp_path / "snap", [ExportFormat.JSONL, ExportFormat.PARQUET])
    for entry in manifest["files"]:
        data = (tmp_path / "snap" / entry["name"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
    on_disk = json.loads((tmp_path / "snap" / "manifest.json").read_text())
    assert on_disk == manifest
    for builder, name in (("json", "data.jsonl"), ("parquet", "data.parquet")):
        ds = datasets.load_dataset(builder, data_files=str(tmp_path / "snap" / name), split="train",
                                   cache_dir=str(tmp_path / "hf"))
        assert ds.num_rows == 3
        assert ds["label"] == ["alpha", "beta", "gamma"] and ds["text"] == ["first text", "second ✓", None]
        assert ds["model_label"] == ["alpha", "beta", None]
        assert set(ds.column_names) == set(manifest["columns"])


def test_label_studio_tasks_and_config(rows, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = write_files(rows, _manifest(rows), tmp_path, [ExportFormat.JSONL])
    manifest = write_files(rows, _manifest(rows), tmp_path, [ExportFormat.LABEL_STUDIO])
    # A second run of the same snapshot adds its files to the manifest instead of forgetting the first.
    assert {f["name"] for f in manifest["files"]} == {f["name"] for f in first["files"]} | {
        "label_studio.json", "label_studio_config.xml"}
    tasks = json.loads((tmp_path / "label_studio.json").read_text())
    assert len(tasks) == 3
    a = tasks[0]
    assert a["data"]["text"] == "first text" and a["data"]["item_id"] == "a"
    assert a["annotations"][0]["result"][0]["value"] == {"choices": ["alpha"]}
    prediction = a["predictions"][0]
    assert prediction["model_version"] == "v4" and prediction["score"] == rows[0].model_score
    assert prediction["result"][0] | {"score": None} == {"from_name": "label", "to_name": "text", "type": "choices",
                                                        "value": {"choices": ["alpha"]}, "score": None}
    assert tasks[2]["predictions"] == [] and tasks[2]["annotations"][0]["ground_truth"] is True
    config = ET.fromstring((tmp_path / "label_studio_config.xml").read_text())
    assert [c.get("value") for c in config.iter("Choice")] == list(TAXONOMY)
    assert label_studio_task(rows[1])["data"]["provenance"] == "corrected"


def test_model_lineage_summary_names_labels_guidelines_and_gaps() -> None:
    model = {"project": "p", "version": 7, "promoted": True, "reason": "ok", "sha256": "s",
             "training_set_version": "t", "metrics": {"heldout_accuracy": 0.8}}
    versions = [{"item_id": "x", "version": 1, "label": "alpha", "provenance": "auto", "guideline_version": 1},
                {"item_id": "y", "version": 2, "label": "alpha", "provenance": "corrected", "guideline_version": 2},
                {"item_id": "z", "version": 1, "label": "beta", "provenance": "auto", "guideline_version": None}]
    lineage = summarise_model(model, ["y@2", "x@1", "z@1", "w@1"], versions)
    assert [m.item_id for m in lineage.members] == ["x", "y", "z"] and lineage.missing == ("w@1",)
    assert lineage.guideline_versions == {1: 1, 2: 1, None: 1}
    assert lineage.label_distribution == {"alpha": 2, "beta": 1}
    assert lineage.provenance == {"auto": 2, "corrected": 1}


def test_label_summary_says_which_models_used_a_label_before_its_correction() -> None:
    versions = [{"item_id": "x", "version": 2, "label": "beta", "guideline_version": 2},
                {"item_id": "x", "version": 1, "label": "alpha", "guideline_version": 1}]
    usages = summarise_label(versions, {1: [{"version": 2, "promoted": False}, {"version": 1, "promoted": True}],
                                        2: [{"version": 3, "promoted": True}]})
    old, new = usages
    assert (old.label.version, old.current, old.superseded_by, old.models, old.promoted_models) == (
        1, False, 2, (1, 2), (1,))
    assert (new.current, new.superseded_by, new.models) == (True, None, (3,))
