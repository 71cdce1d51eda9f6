"""Annotator credentials: who an admin may create, with which role, in which projects, until when."""

from __future__ import annotations

from collections.abc import Sequence

from services.gateway.auth import ALL_PROJECTS, Role
from services.gateway.domain.bounds import ID_MAX
from services.gateway.domain.refusals import Problems, invalid

ANNOTATOR_ID_MAX = 128
MEMBERSHIPS_MAX = 1_000  # projects one annotator may be a member of


def credentials(annotator_id: str, role: str, projects: Sequence[str], expires_unix_ms: int,
                now_unix_ms: float) -> tuple[Role, list[str]]:
    """The role (default: annotator) and the sorted, distinct projects of CreateAnnotator's request, or Refused
    naming every problem."""
    problems: Problems = []
    if not annotator_id or len(annotator_id) > ANNOTATOR_ID_MAX or annotator_id == "admin":
        problems.append(("annotator_id", f"annotator_id must be 1..{ANNOTATOR_ID_MAX} characters, not 'admin'"))
    granted = None
    try:
        granted = Role(role or "annotator")
    except ValueError:
        problems.append(("role", f"unknown role {role!r}"))
    members = sorted(set(projects))
    if granted is not Role.ADMIN and not members:
        problems.append(("projects", f"projects: name the projects the annotator works in, or {ALL_PROJECTS!r} "
                                     "for all"))
    elif len(members) > MEMBERSHIPS_MAX or any(not p or len(p) > ID_MAX for p in members):
        problems.append(("projects", f"projects: at most {MEMBERSHIPS_MAX} names of 1..{ID_MAX} characters"))
    if expires_unix_ms and expires_unix_ms <= now_unix_ms:
        problems.append(("expires_unix_ms", "expires_unix_ms is in the past"))
    if problems or granted is None:
        raise invalid(problems)
    return granted, members
