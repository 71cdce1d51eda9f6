"""Spans on the wire: proto Span messages -> validated contract spans, or a message for INVALID_ARGUMENT.

Pure (no gRPC context): the servicer calls `spans_from_proto` and aborts with
grpc.StatusCode.INVALID_ARGUMENT and the SpanError's text when it raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc

from schemas.spans import MAX_SPANS_PER_ITEM, Span, SpanError, validate_spans

SPAN_ERROR_STATUS = grpc.StatusCode.INVALID_ARGUMENT


def raw_spans(messages: Iterable) -> tuple[Span, ...]:
    """Decode without the text (range, overlap and type checks need it: validate_spans); a confidence of 0 on
    the wire means not set (proto3 has no presence)."""
    messages = list(messages)
    if len(messages) > MAX_SPANS_PER_ITEM:
        raise SpanError(f"{len(messages)} spans, at most {MAX_SPANS_PER_ITEM} per item")
    spans = []
    for i, m in enumerate(messages):
        if m.start < 0 or m.end <= 0 or not m.label:
            raise SpanError(f"span {i}: start must be >= 0, end > 0 and label non-empty")
        if not 0.0 <= m.confidence <= 1.0:
            raise SpanError(f"span {i}: confidence {m.confidence} outside [0, 1]")
        spans.append(Span(start=m.start, end=m.end, label=m.label, confidence=m.confidence or None))
    return tuple(spans)


def spans_from_proto(messages: Iterable, text: str, labels: Sequence[str] | None) -> tuple[Span, ...]:
    """Decode and validate against the item's text and the project's entity types."""
    return validate_spans(text, raw_spans(messages), labels)


def spans_to_proto(spans: Iterable[Span | Mapping[str, Any]], message_type) -> list:
    """Contract spans, or their stored documents, as proto messages."""
    out = []
    for s in spans:
        s = Span.model_validate(s) if isinstance(s, Mapping) else s
        out.append(message_type(start=s.start, end=s.end, label=s.label, confidence=s.confidence or 0.0))
    return out


def span_docs(spans: Iterable[Span]) -> list[dict[str, Any]]:
    """Spans as stored in a document (start, end, label, confidence)."""
    return [s.model_dump() for s in spans]

