"""The dataset loader behind `labelmesh demo --dataset DIR`, on tiny generated sets, and the packaged default."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labelmesh.datasets import DatasetError, categories, dataset_name, load


def write_set(root: Path, rows: dict[str, list[tuple[str, str]]], names: list[str],
              columns: tuple[str, str] = ("text", "category")) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, data in rows.items():
        with (root / f"{split}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows(data)
    (root / "categories.json").write_text(json.dumps(names))
    return root


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_set(tmp_path / "My Intents", {
        "train": [("where is my card", "card_arrival"), ("cancel my transfer, please", "cancel_transfer"),
                  ("card not here yet", "card_arrival")],
        "test": [("stop that payment", "cancel_transfer")],
    }, ["card_arrival", "cancel_transfer"])


def test_a_dataset_in_the_layout_loads_with_its_categories(tiny: Path) -> None:
    train = load("train", tiny)
    assert [(r.item_id, r.text, r.label) for r in train] == [
        ("train-0", "where is my card", "card_arrival"), ("train-1", "cancel my transfer, please", "cancel_transfer"),
        ("train-2", "card not here yet", "card_arrival")]
    assert [r.label for r in load("test", str(tiny))] == ["cancel_transfer"]
    assert categories(tiny) == ["card_arrival", "cancel_transfer"]
    assert dataset_name(tiny) == "my-intents", "a valid project id from the directory's name"


def test_the_default_stays_the_packaged_banking77() -> None:
    assert len(categories()) == 77 and dataset_name() == "banking77"
    assert len(load("train")) == 10003 and len(load("test")) == 3080


@pytest.mark.parametrize(("broken", "message"), [
    (lambda d: (d / "test.csv").unlink(), "missing test.csv"),
    (lambda d: (d / "categories.json").write_text("{}"), "non-empty list"),
    (lambda d: (d / "categories.json").write_text('["card_arrival"]'), "'cancel_transfer' is not in categories"),
    (lambda d: write_set(d, {"train": [("hi", "card_arrival")]}, ["card_arrival", "cancel_transfer"],
                         ("sentence", "category")), "no text column"),
    (lambda d: write_set(d, {"train": [("  ", "card_arrival")]}, ["card_arrival", "cancel_transfer"]), "empty text"),
])
def test_a_dataset_out_of_layout_is_refused_with_what_is_wrong(tiny: Path, broken, message: str) -> None:
    broken(tiny)
    with pytest.raises(DatasetError, match=message):
        load("train", tiny)
        load("test", tiny)


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a directory"):
        load("train", tmp_path / "nowhere")


def test_the_demo_command_refuses_a_bad_dataset_before_starting_anything(tmp_path: Path) -> None:
    from labelmesh.cli import app

    (tmp_path / "train.csv").write_text("text,category\nhi,a\n")
    result = CliRunner().invoke(app, ["demo", "--dataset", str(tmp_path)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.replace("│", " ").split())  # rich draws the error in a wrapped box
    assert "missing test.csv, categories.json" in text
