"""What the admins' read side (ProjectService) accepts: ids, pages and export cursors, every problem by field."""

from __future__ import annotations

from services.gateway.domain.bounds import ID_MAX
from services.gateway.domain.refusals import Problems

PAGE_MAX = 500
EXPORT_PAGE = 500
CURSOR_MAX = 20


def id_problem(field: str, value: str, required: bool = True) -> Problems:
    if required and not value:
        return [(field, "is required")]
    if len(value) > ID_MAX:
        return [(field, f"must be at most {ID_MAX} characters")]
    return []


def page_problems(page_size: int, page_token: str) -> Problems:
    problems = []
    if not 0 <= page_size <= PAGE_MAX:
        problems.append(("page_size", f"must be 0..{PAGE_MAX} (0 for {PAGE_MAX})"))
    problems += id_problem("page_token", page_token, required=False)
    return problems


def export_problems(project: str, cursor: str, limit: int) -> Problems:
    problems = id_problem("project", project)
    if cursor and (not cursor.isdigit() or len(cursor) > CURSOR_MAX):
        problems.append(("cursor", "must be a cursor from an earlier FinalLabel, or empty"))
    if limit < 0:
        problems.append(("limit", "must not be negative"))
    return problems
