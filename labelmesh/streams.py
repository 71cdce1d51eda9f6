"""Pure helpers for reading topics: parsing times, describing a record as a JSON line, and filtering lines."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.events import TOPICS, DeadLetter

ALL_TOPICS: tuple[str, ...] = (*TOPICS, DeadLetter.TOPIC)
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An ISO-8601 time (naive means UTC), a Unix time in ms, or an age such as '15m', '2h', '7d' before now."""
    text = text.strip()
    match = _RELATIVE.match(text)
    if match:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"not a time: {text!r} (use ISO 8601, Unix ms, or an age like 15m, 2h, 7d)") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _json(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class Line:
    """One record as it will be printed, plus the facts filters look at."""

    doc: dict[str, Any]
    project: str | None
    item_id: str | None
    type: str | None
    timestamp_ms: int


def describe(topic: str, partition: int, offset: int, timestamp_ms: int, key: bytes | None, value: bytes | None,
             prefix: str = "") -> Line:
    """A record as a JSON-able document: where it sits, and the event (or, for a dead letter, also its original).

    A value that is not JSON is shown base64-encoded, so even poison records can be inspected.
    """
    name = topic.removeprefix(prefix)
    doc: dict[str, Any] = {
        "topic": name, "partition": partition, "offset": offset,
        "timestamp": datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds"),
        "key": key.decode(errors="replace") if key is not None else None,
    }
    event = _json(value)
    if isinstance(event, dict):
        doc["event"] = event
    else:
        doc["raw_b64"] = base64.b64encode(value or b"").decode()
    facts = event if isinstance(event, dict) else {}
    if name == DeadLetter.TOPIC and isinstance(event, dict):
        try:
            original_bytes = base64.b64decode(event.get("original_b64", ""), validate=True)
        except (binascii.Error, ValueError):
            original_bytes = b""
        original = _json(original_bytes)
        if isinstance(original, dict):
            doc["original"] = original
            facts = original
        elif original_bytes:
            doc["original_text"] = original_bytes.decode(errors="replace")
    return Line(
        doc=doc,
        project=_str(facts.get("project")),
        item_id=_str(facts.get("item_id")),
        type=_str(facts.get("type")),
        timestamp_ms=timestamp_ms,
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class EventFilter:
    """Which lines to keep; an empty set means 'any'. Times compare with the record's Kafka timestamp."""

    projects: frozenset[str] = frozenset()
    item_ids: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None

    def matches(self, line: Line) -> bool:
        if self.projects and line.project not in self.projects:
            return False
        if self.item_ids and line.item_id not in self.item_ids:
            return False
        if self.types and line.type not in self.types:
            return False
        if self.since_ms is not None and line.timestamp_ms < self.since_ms:
            return False
        return self.until_ms is None or line.timestamp_ms < self.until_ms


def check_topics(names: list[str]) -> list[str]:
    """The topics asked for ('all' means every labelmesh topic and the dead letters); unknown names are errors."""
    if not names or "all" in names:
        return list(ALL_TOPICS)
    unknown = [n for n in names if n not in ALL_TOPICS]
    if unknown:
        raise ValueError(f"unknown topic(s) {', '.join(unknown)}; known: {', '.join(ALL_TOPICS)}")
    return list(dict.fromkeys(names))
