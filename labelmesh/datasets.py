"""BANKING77, shipped inside the package (labelmesh/data/banking77, CC BY 4.0); never downloaded at run time."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = Path(__file__).resolve().parent / "data" / "banking77"


@dataclass(frozen=True)
class Row:
    item_id: str
    text: str
    label: str


def dataset_dir() -> Path:
    path = Path(os.environ.get("LABELMESH_BANKING77_DIR", DEFAULT_DIR))
    if not (path / "train.csv").exists():
        raise FileNotFoundError(f"BANKING77 not found in {path}; set LABELMESH_BANKING77_DIR")
    return path


def categories() -> list[str]:
    return json.loads((dataset_dir() / "categories.json").read_text())


def load(split: str = "train") -> list[Row]:
    with (dataset_dir() / f"{split}.csv").open(newline="") as handle:
        return [Row(f"{split}-{i}", r["text"], r["category"]) for i, r in enumerate(csv.DictReader(handle))]
