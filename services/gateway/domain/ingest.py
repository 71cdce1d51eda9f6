"""Ingest: which items a request may add, the event each becomes, and when an id already stored refuses it."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from schemas.events import ItemIngested, TextPayload, derived_id
from schemas.keys import item_key
from schemas.spans import Span, SpanError, TaskType, answer_key, validate_spans
from services.gateway.domain import SERVICE
from services.gateway.domain.bounds import (
    DATASET_MAX_CHARS,
    ID_MAX,
    METADATA_KEYS,
    METADATA_VALUE_CHARS,
    SOURCE_MAX_CHARS,
)
from services.gateway.domain.refusals import Refused


@dataclass(frozen=True)
class NewItem:
    """One item as a client sent it (proto3 strings: empty means not given)."""

    project: str
    item_id: str
    text: str
    source: str = ""
    dataset: str = ""
    golden_label: str = ""
    trusted_label: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    # Spans projects: a golden item's entities as sent (checked against the text by check_item); () for none.
    golden_spans: tuple[Span, ...] = ()


def check_batch(n_items: int, max_items: int, streamed: bool) -> None:
    if not n_items:
        raise Refused("invalid", "no items given")
    if n_items > max_items and not streamed:
        raise Refused("exhausted", f"{n_items} items in one request; at most {max_items} "
                                   "(use IngestStream for large imports)")


def check_item(n: int, item: NewItem, labels: Collection[str], seen: Collection[tuple[str, str]],
               max_text_chars: int, admin: bool, task: TaskType = TaskType.CLASSIFICATION) -> NewItem:
    """Refuse the request at its n-th item unless that item may be ingested; `seen`: (project, item_id) before it.
    The item as it is ingested (golden spans in offset order)."""
    where = f"item {n} ({item.item_id!r})"
    problem = None
    if not item.item_id or len(item.item_id) > ID_MAX:
        problem = f"item_id must be 1..{ID_MAX} characters"
    elif (item.project, item.item_id) in seen:
        problem = "item_id appears twice in this request"
    elif not item.text.strip():
        problem = "text is empty"
    elif len(item.text) > max_text_chars:
        problem = f"text is longer than {max_text_chars} characters"
    elif len(item.source) > SOURCE_MAX_CHARS or len(item.dataset) > DATASET_MAX_CHARS:
        problem = f"source and dataset are at most {SOURCE_MAX_CHARS} characters"
    elif (item.golden_label or item.trusted_label) and not admin:
        raise Refused("forbidden", f"{where}: golden/trusted labels need the admin role")
    elif item.golden_label and item.golden_label not in labels:
        problem = f"golden_label {item.golden_label!r} is not in the project's labels"
    elif item.trusted_label and item.trusted_label not in labels:
        problem = f"trusted_label {item.trusted_label!r} is not in the project's labels"
    elif item.golden_label and item.trusted_label:
        problem = "an item is golden or trusted, not both"
    elif len(item.metadata) > METADATA_KEYS or any(
            len(k) > ID_MAX or len(v) > METADATA_VALUE_CHARS for k, v in item.metadata.items()):
        problem = f"metadata: at most {METADATA_KEYS} keys of {ID_MAX} and values of {METADATA_VALUE_CHARS} characters"
    if problem:
        raise Refused("invalid", f"{where}: {problem}; nothing was ingested")
    return checked_spans(where, item, labels, admin, task)


def checked_spans(where: str, item: NewItem, labels: Collection[str], admin: bool, task: TaskType) -> NewItem:
    """A spans project's items carry golden spans, never golden or trusted labels; a classification project's
    never carry spans."""
    if task is TaskType.CLASSIFICATION:
        if item.golden_spans:
            raise Refused("invalid", f"{where}: golden_spans are for spans projects; this is a classification "
                                     "project (use golden_label); nothing was ingested")
        return item
    if item.golden_label or item.trusted_label:
        raise Refused("invalid", f"{where}: a spans project takes golden_spans, not golden_label or trusted_label; "
                                 "nothing was ingested")
    if item.golden_spans and not admin:
        raise Refused("forbidden", f"{where}: golden spans need the admin role")
    try:
        spans = validate_spans(item.text, item.golden_spans, sorted(labels))
    except SpanError as exc:
        raise Refused("invalid", f"{where}: golden_spans: {exc}; nothing was ingested") from None
    return replace(item, golden_spans=spans)


def content_digest(text: str, golden_label: str | None, trusted_label: str | None,
                   golden_spans: Sequence[Span | Mapping[str, object]] | None = None) -> str:
    """What makes two ingests of one id the same item: its text and its golden or trusted answer (golden spans:
    their ranges and types; an item without them digests as it did before spans existed)."""
    content = f"{text}\x00{golden_label or ''}\x00{trusted_label or ''}"
    if golden_spans:
        content += "\x00" + answer_key(golden_spans)
    return hashlib.sha256(content.encode()).hexdigest()


def event_digest(event: ItemIngested) -> str:
    return content_digest(event.payload.text, event.golden_label, event.trusted_label, event.golden_spans)


def ingested_event(item: NewItem) -> ItemIngested:
    digest = content_digest(item.text, item.golden_label or None, item.trusted_label or None, item.golden_spans)
    return ItemIngested(
        # The same item re-sent is the same event: consumers drop the duplicate.
        event_id=derived_id("ingested", item.project, item.item_id, digest),
        producer=SERVICE,
        project=item.project,
        item_id=item.item_id,
        payload=TextPayload(text=item.text),
        source=item.source or "api",
        dataset=item.dataset or "default",
        golden_label=item.golden_label or None,
        trusted_label=item.trusted_label or None,
        golden_spans=item.golden_spans or None,
    )


def conflicts(events: Sequence[ItemIngested], stored: Mapping[str, str]) -> list[str]:
    """The item ids (sorted) among `events` stored with other content; `stored`: content digests by item key.

    An id already stored with other content is refused, never overwritten (its golden answer, its text and
    everything trained on it would change under the same id); the same content again is a no-op.
    """
    return sorted(e.item_id for e in events
                  if stored.get(item_key(e.project, e.item_id), event_digest(e)) != event_digest(e))


def conflict(changed: Sequence[str], rest: str) -> Refused:
    return Refused("exists", f"{len(changed)} item_id(s) exist with other text or labels (ingest them under new ids): "
                             f"{', '.join(changed[:20])}; {rest}")
