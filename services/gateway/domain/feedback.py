"""Annotator feedback: a comment on an item or on a project's guidelines, published as a qc.flagged."""

from __future__ import annotations

from schemas.events import FlagKind, FlagSubject, QcFlagged
from services.gateway.domain import SERVICE
from services.gateway.domain.bounds import COMMENT_MAX_CHARS
from services.gateway.domain.refusals import Refused


def check_comment(comment: str) -> None:
    if not comment.strip():
        raise Refused("invalid", "comment is required")


def feedback_flag(project: str, item_id: str, comment: str, annotator_id: str) -> QcFlagged:
    """On the item when one is named, else on the project's guidelines; the comment cut to COMMENT_MAX_CHARS."""
    return QcFlagged(
        producer=SERVICE, project=project, item_id=item_id or None,
        subject=FlagSubject.ITEM if item_id else FlagSubject.GUIDELINES,
        subject_id=item_id or project, kind=FlagKind.ANNOTATOR_FEEDBACK,
        message=comment[:COMMENT_MAX_CHARS], evidence={"annotator": annotator_id},
    )
