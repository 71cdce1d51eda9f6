"""Calibration sessions: which items and which annotators, decided from a request and what the gateway knows."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MAX_ITEMS = 500
MIN_ANNOTATORS = 2
SESSION_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
TIER = "calibration"  # the tier of a calibration task: not a routing tier, so routing never touches it


class CalibrationError(ValueError):
    """A session that cannot be created; code is invalid, not_found or precondition (the gRPC status to send)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


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
