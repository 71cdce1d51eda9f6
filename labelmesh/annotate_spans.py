"""`labelmesh annotate` on a spans project: the text with its words numbered and the pre-labelled entities, and
the edits a person makes to them (accept, fix a boundary, retype, add, delete) as pure functions."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from labelmesh.ml.spans import words
from schemas.rpc import gateway_pb2 as pb

SPAN_KEYS = ("enter accept · + W[-W] TYPE add · d N delete · t N TYPE retype · b N W[-W] boundary · "
             "s skip · f flag · g guidelines · q quit")


@dataclass(frozen=True)
class Entity:
    start: int
    end: int
    label: str


class EditError(ValueError):
    """An edit that cannot apply: the message says why, and the entities stay as they were."""


def entities_of(task: pb.Task) -> list[Entity]:
    return sorted((Entity(s.start, s.end, s.label) for s in task.spans), key=lambda e: (e.start, e.end))


def _type(name: str, types: list[str]) -> str:
    found = {t.lower(): t for t in types}.get(name.lower())
    if found is None:
        raise EditError(f"{name!r} is not one of the entity types: {', '.join(types)}")
    return found


def _words(spec: str, text: str) -> tuple[int, int]:
    """The character range of words W or W-W (numbered from 1, as shown)."""
    offsets = words(text)
    first, _, last = spec.partition("-")
    if not first.isdigit() or (last and not last.isdigit()):
        raise EditError(f"{spec!r}: give a word number or a range like 3-4")
    a, b = int(first), int(last or first)
    if not 1 <= a <= b <= len(offsets):
        raise EditError(f"{spec!r}: words are numbered 1 to {len(offsets)}")
    return offsets[a - 1][0], offsets[b - 1][1]


def _index(spec: str, entities: list[Entity]) -> int:
    if not spec.isdigit() or not 1 <= int(spec) <= len(entities):
        raise EditError(f"{spec!r}: entities are numbered 1 to {len(entities)}")
    return int(spec) - 1


def edit(entities: list[Entity], command: str, text: str, types: list[str]) -> list[Entity]:
    """The entities after one edit command; EditError when it does not apply (an overlap included)."""
    parts = command.split()
    if not parts:
        raise EditError("no command")
    op, args = parts[0], parts[1:]
    out = list(entities)
    if op == "+" and len(args) == 2:
        start, end = _words(args[0], text)
        out.append(Entity(start, end, _type(args[1], types)))
    elif op == "d" and len(args) == 1:
        del out[_index(args[0], out)]
    elif op == "t" and len(args) == 2:
        n = _index(args[0], out)
        out[n] = Entity(out[n].start, out[n].end, _type(args[1], types))
    elif op == "b" and len(args) == 2:
        n = _index(args[0], out)
        start, end = _words(args[1], text)
        out[n] = Entity(start, end, out[n].label)
    else:
        raise EditError(f"{command!r}: not an edit ({SPAN_KEYS})")
    out.sort(key=lambda e: (e.start, e.end))
    for a, b in zip(out, out[1:]):
        if b.start < a.end:
            raise EditError(f"{text[a.start:a.end]!r} and {text[b.start:b.end]!r} would overlap")
    return out


def as_proto(entities: list[Entity]) -> list[pb.Span]:
    return [pb.Span(start=e.start, end=e.end, label=e.label) for e in entities]


def show_spans(console: Console, task: pb.Task, entities: list[Entity]) -> None:
    """The text with numbered words and entities highlighted, then the entities as a numbered list."""
    title = f"{task.item_id} · " + (f"session {task.session_id}" if task.session_id else task.tier)
    text = Text(task.text)
    for e in entities:
        text.stylize("bold reverse", e.start, e.end)
    console.print(Panel(text, title=escape(title), subtitle=f"guidelines v{task.guideline_version}"))
    console.print(escape("  ".join(f"{n}:{task.text[a:b]}" for n, (a, b) in enumerate(words(task.text), 1))))
    if not entities:
        console.print("No entities marked.")
    for n, e in enumerate(entities, 1):
        shown = next((f" ({s.confidence:.0%})" for s in task.spans if (s.start, s.end, s.label) ==
                      (e.start, e.end, e.label) and s.confidence), "")
        console.print(escape(f"  {n}. {task.text[e.start:e.end]!r} {e.label}{shown}"))
    console.print(escape("Entity types: " + ", ".join(task.labels)))
