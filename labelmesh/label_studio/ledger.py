"""The backend's record of what it submitted for each Label Studio annotation (SQLite, next to the config file).

Label Studio's deletion webhook carries annotation ids only; this is how the backend knows which labelmesh item,
annotator and label a deleted annotation was. The sync submits only annotations it does not hold, so re-running it
(or a webhook and the sync meeting the same annotation) submits nothing twice. A skip is recorded with an empty
label. It is the bridge's own state, not a labelmesh service's database; the backend and the sync share it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Submitted:
    annotation_id: int
    project: str
    item_id: str
    task_id: str
    annotator: str
    label: str
    submission_id: str
    deleted: bool


class Ledger:
    def __init__(self, path: str | Path) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS submitted (annotation_id INTEGER PRIMARY KEY, project TEXT NOT NULL, "
            "item_id TEXT NOT NULL, task_id TEXT NOT NULL, annotator TEXT NOT NULL, label TEXT NOT NULL, "
            "submission_id TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, changed_to TEXT NOT NULL DEFAULT '')")

    def close(self) -> None:
        self.db.close()

    def record(self, s: Submitted) -> None:
        """First submission wins: an update that labelmesh refused does not overwrite what it holds."""
        self.db.execute("INSERT OR IGNORE INTO submitted VALUES (?, ?, ?, ?, ?, ?, ?, 0, '')",
                        (s.annotation_id, s.project, s.item_id, s.task_id, s.annotator, s.label, s.submission_id))

    def get(self, annotation_id: int) -> Submitted | None:
        row = self.db.execute("SELECT annotation_id, project, item_id, task_id, annotator, label, submission_id, "
                              "deleted FROM submitted WHERE annotation_id = ?", (annotation_id,)).fetchone()
        return Submitted(*row[:7], bool(row[7])) if row else None

    def mark_deleted(self, annotation_id: int) -> bool:
        """True the first time only, so a redelivered deletion flags nothing twice."""
        return self.db.execute("UPDATE submitted SET deleted = 1 WHERE annotation_id = ? AND deleted = 0",
                               (annotation_id,)).rowcount == 1

    def mark_changed(self, annotation_id: int, label: str) -> bool:
        """True the first time an annotation is seen changed to this label after submission (flag it once)."""
        return self.db.execute("UPDATE submitted SET changed_to = ? WHERE annotation_id = ? AND changed_to != ?",
                               (label, annotation_id, label)).rowcount == 1
