"""Which ingested payloads the prelabeler can embed, and why not the others."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextCheck:
    text: str
    truncated: bool
    problem: str | None = None


def check_text(text: str, max_chars: int) -> TextCheck:
    """Reject empty or undecodable text; cut over-long text and say so."""
    if not text or not text.strip():
        return TextCheck("", False, "empty text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates survive JSON decoding but are not text
        return TextCheck("", False, f"invalid UTF-8: {exc.reason}")
    if len(text) > max_chars:
        return TextCheck(text[:max_chars], True)
    return TextCheck(text, False)
