"""Text-classification datasets in one layout: BANKING77 shipped inside the package (labelmesh/data/banking77,
CC BY 4.0; never downloaded at run time), or any directory laid out the same way (`labelmesh demo --dataset DIR`):
train.csv and test.csv with `text` and `category` columns, and categories.json, the list of category names."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = Path(__file__).resolve().parent / "data" / "banking77"
SPLITS = ("train", "test")
COLUMNS = ("text", "category")


@dataclass(frozen=True)
class Row:
    item_id: str
    text: str
    label: str


class DatasetError(ValueError):
    """A dataset directory that is not in the layout above, with what is wrong and where."""


def dataset_dir(directory: Path | str | None = None) -> Path:
    """The dataset's directory: `directory`, else LABELMESH_BANKING77_DIR, else the packaged BANKING77."""
    path = Path(directory) if directory is not None else Path(os.environ.get("LABELMESH_BANKING77_DIR", DEFAULT_DIR))
    if directory is None and not (path / "train.csv").exists():
        raise FileNotFoundError(f"BANKING77 not found in {path}; set LABELMESH_BANKING77_DIR")
    if not path.is_dir():
        raise DatasetError(f"{path}: not a directory")
    missing = [name for name in (*(f"{s}.csv" for s in SPLITS), "categories.json") if not (path / name).is_file()]
    if missing:
        raise DatasetError(f"{path}: missing {', '.join(missing)} (need train.csv and test.csv with text and "
                           f"category columns, and categories.json)")
    return path


def categories(directory: Path | str | None = None) -> list[str]:
    path = dataset_dir(directory) / "categories.json"
    try:
        names = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not JSON: {exc}") from exc
    if not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)):
        raise DatasetError(f"{path}: must be a non-empty list of category names")
    if len(set(names)) != len(names):
        raise DatasetError(f"{path}: category names repeat")
    return names


def load(split: str = "train", directory: Path | str | None = None) -> list[Row]:
    """One split's rows, item ids `{split}-{row number}`; every category must be one of categories.json's."""
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {SPLITS}, got {split!r}")
    path = dataset_dir(directory) / f"{split}.csv"
    known = set(categories(directory))
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        absent = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if absent:
            raise DatasetError(f"{path}: no {' or '.join(absent)} column (has {reader.fieldnames})")
        rows = []
        for i, r in enumerate(reader):
            if r["category"] not in known:
                raise DatasetError(f"{path}, row {i + 2}: category {r['category']!r} is not in categories.json")
            if not (r["text"] or "").strip():
                raise DatasetError(f"{path}, row {i + 2}: empty text")
            rows.append(Row(f"{split}-{i}", r["text"], r["category"]))
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return rows


def dataset_name(directory: Path | str | None = None) -> str:
    """A project id for the dataset: its directory's name, lowercased, [a-z0-9-] only."""
    name = dataset_dir(directory).resolve().name.lower()
    return "".join(c if c.isascii() and c.isalnum() else "-" for c in name).strip("-")[:64] or "dataset"
