"""The calibration-session report from qc's stored labels: which labels to read, then the pure report."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase

from services.qc.domain.agreement import Record
from services.qc.domain.calibration_report import CalibrationReport, calibration_report


async def session_records(
    db: AsyncDatabase,
    project: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    min_annotators: int = 2,
    experts: bool = False,
    session: str | None = None,
) -> list[Record]:
    """(item, annotator, label) of the session: labels in [since, until) on items that at least min_annotators labelled.

    A calibration session is every annotator labelling the same items in one sitting. One created through
    the gateway (CreateCalibrationSession) is selected by its id, which its labels carry; otherwise
    bounding by time and by how many people labelled an item selects it from everything qc has stored.
    """
    query: dict[str, object] = {"project": project}
    if session:
        query["session"] = session
    if not experts:
        query["expert"] = False
    docs = [d async for d in db["labels"].find(query, {"item_id": 1, "annotator": 1, "label": 1, "at": 1})]
    docs = [d for d in docs if (since is None or d["at"] >= since) and (until is None or d["at"] < until)]
    docs.sort(key=lambda d: (d["at"], d["_id"]))
    annotators: dict[str, set[str]] = defaultdict(set)
    for d in docs:
        annotators[d["item_id"]].add(d["annotator"])
    return [(d["item_id"], d["annotator"], d["label"]) for d in docs if len(annotators[d["item_id"]]) >= min_annotators]


async def session_report(db: AsyncDatabase, project: str, **selection: object) -> CalibrationReport:
    """The calibration report over session_records; ValueError when the selection holds no labels."""
    records = await session_records(db, project, **selection)  # type: ignore[arg-type]
    if not records:
        raise ValueError(f"no multiply-labelled items for project {project!r} in that selection")
    return calibration_report(records)
