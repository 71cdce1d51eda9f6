"""Size bounds on what the gateway accepts: free-text fields, and events that must fit their topic."""

from __future__ import annotations

from collections.abc import Sequence

from schemas.events import Envelope
from schemas.topics import max_message_bytes
from services.gateway.domain.refusals import Refused

ID_MAX = 256
SOURCE_MAX_CHARS = DATASET_MAX_CHARS = 256  # provenance names, not documents
LABELS_MAX = 1_000  # labels in one project's taxonomy
GUIDELINES_MAX_CHARS = 1_000_000
COMMENT_MAX_CHARS = 4_000
METADATA_KEYS, METADATA_VALUE_CHARS = 64, 4_000
# Room left in a record batch for its header, the key and the headers next to the event's JSON.
RECORD_OVERHEAD_BYTES = 4_096


def too_big(event: Envelope) -> str | None:
    """Why this event cannot be published to its topic, or None. Checked at the RPC, before anything is stored:
    the broker would refuse it on every retry (MessageSizeTooLargeError), so it is bad input, never transient."""
    limit = max_message_bytes(event.TOPIC) - RECORD_OVERHEAD_BYTES
    size = len(event.model_dump_json().encode())
    if size > limit:
        return f"its {event.TOPIC} event is {size} bytes encoded; the topic takes at most {limit}"
    return None


def check_fit(events: Sequence[Envelope], what: str) -> None:
    """Refuse (invalid) naming the first event that cannot fit its topic."""
    for n, event in enumerate(events):
        problem = too_big(event)
        if problem:
            where = f"{what} {n}" if len(events) > 1 else what
            raise Refused("invalid", f"{where}: {problem} (shorten its text or metadata); nothing was stored")
