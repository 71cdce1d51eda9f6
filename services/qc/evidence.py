"""qc.evidence events: the facts an item's owner tells the owners of annotator and project statistics."""

from __future__ import annotations

from schemas.events import EvidenceKind, QcEvidence, derived_id
from schemas.keys import annotator_key

SERVICE = "qc"


def fact(project: str, annotator: str | None, kind: EvidenceKind, source: str, item_id: str,
         correct: bool | None = None, correlation_id: str | None = None) -> QcEvidence:
    """One fact, its id derived from whose statistics it counts in and from its source (an event id, an item key),
    so the same fact seen twice (a redelivery, a re-run after a crash, a replay) is counted once."""
    key = annotator_key(project, annotator) if annotator is not None else project
    return QcEvidence(event_id=derived_id(key, kind.value, source), producer=SERVICE, project=project,
                      item_id=item_id, annotator=annotator, kind=kind, correct=correct, correlation_id=correlation_id)
