"""The ids of stored documents and Kafka keys built from several parts, defined once for every service."""

from __future__ import annotations


def item_key(project: str, item_id: str) -> str:
    """One item of one project: `project/item_id` (the `_id` of per-item documents)."""
    return f"{project}/{item_id}"


def annotator_key(project: str, annotator: str) -> str:
    """One annotator's record within one project: `project/annotator`."""
    return f"{project}/{annotator}"


ALL_PROJECTS = "*"  # an annotator's membership that reaches every project (CreateAnnotatorRequest.projects)
