"""A spans project's exports: JSONL with offsets, CoNLL, Hugging Face tokens/ner_tags, Label Studio Labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelmesh.admin_cli import export_row
from labelmesh.export_formats import write_export
from schemas.rpc import gateway_pb2 as pb
from schemas.spans import SPANS_LABEL

TYPES = ["person", "location"]
TEXT = "Ana flew to New York"


def _rows() -> list[dict]:
    final = pb.FinalLabel(project="ner", item_id="i", text=TEXT, label=SPANS_LABEL, version=1, confidence=0.9,
                          provenance="consensus", spans=[pb.Span(start=0, end=3, label="person"),
                                                         pb.Span(start=12, end=20, label="location")])
    return [export_row(final)]


def test_a_spans_row_has_offsets_and_no_label_and_a_class_row_is_as_before() -> None:
    (row,) = _rows()
    assert "label" not in row and row["spans"] == [{"start": 0, "end": 3, "label": "person", "text": "Ana"},
                                                   {"start": 12, "end": 20, "label": "location", "text": "New York"}]
    plain = export_row(pb.FinalLabel(item_id="c", text="t", label="yes", version=1))
    assert plain["label"] == "yes" and "spans" not in plain


def test_spans_rows_go_to_jsonl_conll_hf_and_label_studio(tmp_path: Path) -> None:
    from datasets import load_from_disk

    rows = _rows()
    write_export("jsonl", rows, TYPES, tmp_path / "f.jsonl")
    assert json.loads((tmp_path / "f.jsonl").read_text())["spans"][1]["text"] == "New York"
    write_export("conll", rows, TYPES, tmp_path / "f.conll")
    assert (tmp_path / "f.conll").read_text() == "Ana\tB-person\nflew\tO\nto\tO\nNew\tB-location\nYork\tI-location\n\n"
    write_export("hf", rows, TYPES, tmp_path / "hf")
    train = load_from_disk(str(tmp_path / "hf"))["train"]
    names = train.features["ner_tags"].feature.names
    assert names[0] == "O" and train[0]["tokens"] == ["Ana", "flew", "to", "New", "York"]
    assert [names[t] for t in train[0]["ner_tags"]] == ["B-person", "O", "O", "B-location", "I-location"]
    write_export("label-studio", rows, TYPES, tmp_path / "ls.json")
    result = json.loads((tmp_path / "ls.json").read_text())[0]["annotations"][0]["result"]
    assert [(r["type"], r["value"]["labels"], r["value"]["start"]) for r in result] == [
        ("labels", ["person"], 0), ("labels", ["location"], 12)]
    with pytest.raises(ValueError, match="spans projects"):
        write_export("conll", [export_row(pb.FinalLabel(label="y"))],
                     TYPES, tmp_path / "x.conll")
