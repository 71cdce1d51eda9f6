"""Entity spans: the contract for span-labelling projects and its pure validation.

A span is a half-open character range [start, end) into the item's original text, an entity type
(one of the project's labels) and, on model output, a calibrated confidence. Tokenisation belongs to
the model; nothing here knows about tokens.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Iterable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

MAX_SPANS_PER_ITEM = 512
# LabelSubmitted/LabelFinalized keep their required `label` (classification is unchanged); a spans
# item carries this placeholder there and its answer in `spans`.
SPANS_LABEL = "__spans__"


class TaskType(StrEnum):
    CLASSIFICATION = "classification"
    SPANS = "spans"


class Span(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: int = Field(ge=0, description="first character, offset into the original text")
    end: int = Field(gt=0, description="one past the last character")
    label: Annotated[str, Field(min_length=1, max_length=256)]
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)


Spans = Annotated[tuple[Span, ...], Field(max_length=MAX_SPANS_PER_ITEM)]


class SpanError(ValueError):
    """A span list that cannot be stored: the gateway answers INVALID_ARGUMENT with this message."""


def span_errors(text: str, spans: Sequence[Span], labels: Sequence[str] | None = None) -> list[str]:
    """Every reason the spans are unacceptable for this text (empty when they are fine)."""
    errors: list[str] = []
    if len(spans) > MAX_SPANS_PER_ITEM:
        errors.append(f"{len(spans)} spans, at most {MAX_SPANS_PER_ITEM} per item")
    allowed = set(labels) if labels is not None else None
    for i, s in enumerate(spans):
        if s.start >= s.end:
            errors.append(f"span {i}: empty or reversed range [{s.start}, {s.end})")
        if s.start < 0 or s.end > len(text):
            errors.append(f"span {i}: [{s.start}, {s.end}) outside the text (length {len(text)})")
        if allowed is not None and s.label not in allowed:
            errors.append(f"span {i}: type {s.label!r} is not one of the project's entity types")
    ordered = sorted(range(len(spans)), key=lambda i: (spans[i].start, spans[i].end))
    for a, b in zip(ordered, ordered[1:]):
        if spans[b].start < spans[a].end:
            errors.append(
                f"spans {a} and {b} overlap: [{spans[a].start}, {spans[a].end}) and [{spans[b].start}, {spans[b].end})"
            )
    return errors


def validate_spans(text: str, spans: Sequence[Span], labels: Sequence[str] | None = None) -> tuple[Span, ...]:
    """The spans sorted by offset, or SpanError naming every problem."""
    errors = span_errors(text, spans, labels)
    if errors:
        raise SpanError("; ".join(errors))
    return tuple(sorted(spans, key=lambda s: (s.start, s.end)))


def answer_key(spans: Iterable[Span | Mapping[str, Any]]) -> str:
    """What makes two span answers the same answer: each span's range and type in offset order, confidence aside
    (an item's spans are right only if every one is). A string, so that FerretDB (no nested arrays) stores it."""
    rows = [[s["start"], s["end"], s["label"]] if isinstance(s, Mapping) else [s.start, s.end, s.label] for s in spans]
    return json.dumps(sorted(rows), separators=(",", ":"))
