"""An item's progress: each event folded into its progress document, and what it adds to its project's counters.

Counters count state changes, never events: a redelivered event changes nothing, so it counts nothing twice.
"""

from __future__ import annotations

from typing import Any

from schemas.events import Envelope, ItemIngested, ItemRouted, LabelFinalized, LabelSubmitted
from schemas.spans import answer_key


def apply_event(doc: dict[str, Any], event: Envelope, counts: dict[str, int]) -> bool:
    """Fold one event into an item's progress document; add what changed to counts. True when it changed."""
    if isinstance(event, ItemIngested):
        if doc.get("ingested"):
            return False
        doc["ingested"] = True
        doc["golden_label"] = event.golden_label
        if event.golden_spans is not None:
            doc["golden_spans"] = answer_key(event.golden_spans)
        counts["ingested"] += 1
        counts["golden_items"] += event.golden_label is not None or event.golden_spans is not None
        return True
    if isinstance(event, ItemRouted):
        changed = False
        if event.model_version is not None and not doc.get("prelabelled"):
            # Routed on a model's pre-label: at its first routing, or, for an item ingested before the project's
            # first model (routed with none), when that model arrives and the item is routed again.
            doc["prelabelled"] = True
            counts["prelabelled"] += 1
            changed = True
        if not doc.get("tier"):
            doc["tier"] = event.tier.value
            counts[f"routed.{event.tier.value}"] += 1
            counts["open_items"] += event.tier.value != "auto" and "final" not in doc
            changed = True
        return changed
    if isinstance(event, LabelSubmitted):
        if event.session_id:  # a calibration label measures agreement; it is not a vote on the item
            return False
        labels = doc.setdefault("labels", {})
        if event.annotator_id in labels:
            return False
        labels[event.annotator_id] = event.label
        if event.spans is not None:  # a spans answer: whole answers decide unanimity
            doc.setdefault("answers", {})[event.annotator_id] = answer_key(event.spans)
        counts["human_labels"] += 1
        if event.golden and doc.get("golden_label"):
            counts["golden_answered"] += 1
            counts["golden_correct"] += event.label == doc["golden_label"]
        elif event.golden and doc.get("golden_spans") is not None and event.spans is not None:
            counts["golden_answered"] += 1  # correct only if every span is (as for auto-accepted items)
            counts["golden_correct"] += answer_key(event.spans) == doc["golden_spans"]
        return True
    if isinstance(event, LabelFinalized):
        final = doc.get("final")
        if final and final["version"] >= event.version:
            return False
        doc["final"] = {"label": event.label, "version": event.version, "confidence": event.confidence,
                        "provenance": event.provenance.value, "model_version": event.model_version,
                        "guideline_version": event.guideline_version, "golden": event.golden,
                        "at": event.occurred_at,
                        **({"spans": [s.model_dump() for s in event.spans]} if event.spans is not None else {})}
        if final is None:
            counts["final"] += 1
            counts["open_items"] -= doc.get("tier") not in (None, "auto")
            counts[f"final_by_provenance.{event.provenance.value}"] += 1
            votes = set((doc.get("answers") or doc.get("labels") or {}).values())
            if len(doc.get("labels") or {}) >= 2:
                counts["multi_labelled"] += 1
                counts["unanimous"] += len(votes) == 1
        return True
    return False
