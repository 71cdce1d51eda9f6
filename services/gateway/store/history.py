"""Each item's history (`history`, `_id` = the event or call that caused the entry), as GetItemHistory shows it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from labelmesh.runtime.mongo import insert_new
from schemas.events import ItemIngested, ItemRouted, LabelFinalized, LabelSubmitted, QcFlagged, utcnow


def entry(project: str, item_id: str, kind: str, detail: dict[str, Any], key: str) -> dict[str, Any]:
    """One item-history entry, keyed by the event that caused it so a redelivery records nothing twice."""
    return {"_id": key, "project": project, "item_id": item_id, "kind": kind, "at": utcnow(),
            "detail": json.dumps(detail, default=str)}


def ingested(event: ItemIngested) -> dict[str, Any]:
    return entry(event.project, event.item_id, "ingested",
                 {"source": event.source, "golden": event.golden_label is not None or event.golden_spans is not None,
                  "trusted": event.trusted_label is not None}, event.event_id)


def routed(event: ItemRouted) -> dict[str, Any]:
    return entry(event.project, event.item_id, "routed",
                 {"tier": event.tier.value, "required": event.required_annotators, "spot_check": event.spot_check,
                  "golden": event.golden, "model_version": event.model_version,
                  "prelabel": [s.model_dump() for s in event.top_k], "reasons": list(event.reasons)}, event.event_id)


def finalized(event: LabelFinalized) -> dict[str, Any]:
    return entry(event.project, event.item_id, "finalized",
                 {"label": event.label, "version": event.version, "provenance": event.provenance.value,
                  "confidence": event.confidence}, event.event_id)


def flagged(event: QcFlagged) -> dict[str, Any]:
    return entry(event.project, event.item_id or "", "flagged", {"kind": event.kind.value, "message": event.message},
                 event.event_id)


def submitted(event: LabelSubmitted) -> dict[str, Any]:
    return entry(event.project, event.item_id, "label_submitted",
                 {"annotator": event.annotator_id, "label": event.label, "time_spent_ms": event.time_spent_ms,
                  "guideline_version": event.guideline_version, "session": event.session_id}, event.event_id)


def skipped(lease: dict[str, Any], annotator_id: str, reason: str) -> dict[str, Any]:
    return entry(lease["project"], lease["item_id"], "skipped", {"annotator": annotator_id, "reason": reason},
                 f"skip/{lease['_id']}")


def calibration(project: str, item_id: str, session: str, annotators: Sequence[str]) -> dict[str, Any]:
    return entry(project, item_id, "calibration", {"session": session, "annotators": list(annotators)},
                 f"calibration/{session}/{item_id}")


class HistoryStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.history = db["history"]

    async def add(self, entries: Sequence[dict[str, Any]]) -> None:
        """Entries in one command; an entry already recorded stays as it was."""
        await insert_new(self.history, list(entries))

    async def of_item(self, project: str, item_id: str) -> list[dict[str, Any]]:
        """The item's entries, oldest first."""
        return [d async for d in self.history.find({"project": project, "item_id": item_id}, sort=[("at", 1)])]
