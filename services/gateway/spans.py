"""Spans on the wire: proto Span messages -> validated contract spans, or a message for INVALID_ARGUMENT.

Pure (no gRPC context): the servicer calls `spans_from_proto` and aborts with
grpc.StatusCode.INVALID_ARGUMENT and the SpanError's text when it raises.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import grpc

from schemas.spans import MAX_SPANS_PER_ITEM, Span, SpanError, validate_spans

SPAN_ERROR_STATUS = grpc.StatusCode.INVALID_ARGUMENT


def spans_from_proto(messages: Iterable, text: str, labels: Sequence[str] | None) -> tuple[Span, ...]:
    """Decode and validate; a confidence of 0 on the wire means not set (proto3 has no presence)."""
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
    return validate_spans(text, spans, labels)


def spans_to_proto(spans: Iterable[Span], message_type) -> list:
    return [message_type(start=s.start, end=s.end, label=s.label, confidence=s.confidence or 0.0) for s in spans]
