"""Calibration sessions: which items and which annotators, decided from a request and what the gateway knows."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.gateway.domain.refusals import Kind, Refused

MAX_ITEMS = 500
MIN_ANNOTATORS = 2
SESSION_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
TIER = "calibration"  # the tier of a calibration task: not a routing tier, so routing never touches it


class CalibrationError(Refused):
    """A session that cannot be created; code is invalid, not_found, precondition or exists."""

    def __init__(self, code: Kind, message: str) -> None:
        super().__init__(code, message)


@dataclass(frozen=True)
class Annotator:
    annotator_id: str
    role: str
    suspended: bool = False


def session_id(requested: str) -> str:
    """The client's id when it is a valid one, else a new one."""
    if not requested:
        return f"cal-{uuid.uuid4().hex[:12]}"
    if not SESSION_ID.fullmatch(requested):
        raise CalibrationError("invalid", "session_id must be 1..64 characters of A-Z, a-z, 0-9, '.', '_', '-'")
    return requested


def check_item_request(item_ids: Sequence[str], n: int) -> None:
    """Exactly one of item_ids and n, within bounds."""
    if item_ids and n:
        raise CalibrationError("invalid", "give item_ids or n, not both")
    if not item_ids and not n:
        raise CalibrationError("invalid", "give the items (item_ids) or how many to pick (n)")
    if n and not 1 <= n <= MAX_ITEMS:
        raise CalibrationError("invalid", f"n must be between 1 and {MAX_ITEMS}")
    if len(item_ids) > MAX_ITEMS:
        raise CalibrationError("invalid", f"at most {MAX_ITEMS} items in a session")
    if any(not i for i in item_ids) or len(set(item_ids)) != len(item_ids):
        raise CalibrationError("invalid", "item_ids must be distinct and non-empty")


def check_existing(existing: Mapping[str, Any], project: str, asked: Mapping[str, Any]) -> None:
    """A session id used again is the same session only with the same project and request (a retry)."""
    if existing["project"] != project or existing["request"] != asked:
        raise CalibrationError("exists", f"session {existing['_id']!r} exists with other settings")


def check_named_items(item_ids: Sequence[str], golden: Mapping[str, bool]) -> None:
    """The named items must exist (`golden`: whether each stored one is golden) and none may be golden:
    annotators would meet them again as golden tasks, knowing them, and their answers must stay unseen."""
    missing = [i for i in item_ids if i not in golden]
    if missing:
        raise CalibrationError("not_found", f"unknown items: {', '.join(missing[:20])}")
    known = sorted(i for i, is_golden in golden.items() if is_golden)
    if known:
        raise CalibrationError("invalid", f"golden items cannot be calibration items: {', '.join(known[:20])}")


def pick_items(candidates: Sequence[str], n: int, seed: str) -> tuple[str, ...]:
    """n of the candidates, a random sample that the seed (the session id) fixes, in a stable order."""
    if n > len(candidates):
        raise CalibrationError("precondition", f"the project has only {len(candidates)} items to choose from, "
                                               f"{n} asked for")
    return tuple(sorted(random.Random(seed).sample(sorted(candidates), n)))


def pick_annotators(known: Mapping[str, Annotator], named: Sequence[str]) -> tuple[str, ...]:
    """The named annotators (each must exist and be active), or every active annotator with the annotator role."""
    if named:
        if any(not a for a in named) or len(set(named)) != len(named):
            raise CalibrationError("invalid", "annotators must be distinct and non-empty")
        unknown = [a for a in named if a not in known]
        if unknown:
            raise CalibrationError("not_found", f"unknown annotators: {', '.join(sorted(unknown))}")
        admins = [a for a in named if known[a].role == "admin"]
        if admins:
            raise CalibrationError("invalid", f"admins do not label: {', '.join(sorted(admins))}")
        suspended = [a for a in named if known[a].suspended]
        if suspended:
            raise CalibrationError("precondition", f"suspended annotators: {', '.join(sorted(suspended))}")
        chosen = tuple(named)
    else:
        chosen = tuple(sorted(a.annotator_id for a in known.values() if a.role == "annotator" and not a.suspended))
    if len(chosen) < MIN_ANNOTATORS:
        raise CalibrationError("precondition", f"a calibration session needs at least {MIN_ANNOTATORS} active "
                                               f"annotators; {len(chosen)} available")
    return chosen
