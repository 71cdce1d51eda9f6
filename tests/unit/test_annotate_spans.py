"""The terminal client's edits of a spans task (labelmesh/annotate_spans.py)."""

from __future__ import annotations

import pytest

from labelmesh.annotate_spans import EditError, Entity, edit

TEXT = "Ana flew to New York today"
TYPES = ["person", "location"]


def test_add_retype_fix_a_boundary_and_delete_by_word_numbers() -> None:
    entities = [Entity(12, 15, "person")]  # the model's 'New', mistyped and one word short
    entities = edit(entities, "t 1 Location", TEXT, TYPES)
    entities = edit(entities, "b 1 4-5", TEXT, TYPES)
    entities = edit(entities, "+ 1 person", TEXT, TYPES)
    assert [(TEXT[e.start:e.end], e.label) for e in entities] == [("Ana", "person"), ("New York", "location")]
    assert edit(entities, "d 1", TEXT, TYPES) == [Entity(12, 20, "location")]


@pytest.mark.parametrize("command, why", [
    ("+ 4 person", "overlap"), ("+ 9 person", "numbered 1 to 6"), ("+ 2 org", "not one of the entity types"),
    ("d 3", "numbered 1 to 2"), ("b 1 x", "word number"), ("zap", "not an edit"),
])
def test_an_edit_that_cannot_apply_says_why(command: str, why: str) -> None:
    with pytest.raises(EditError, match=why):
        edit([Entity(0, 3, "person"), Entity(12, 20, "location")], command, TEXT, TYPES)
