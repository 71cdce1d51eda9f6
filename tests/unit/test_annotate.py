"""The terminal client's reading of an answer (labelmesh/annotate.py)."""

from __future__ import annotations

from labelmesh.annotate import choice


def test_an_answer_names_a_label_by_number_or_name() -> None:
    labels = ["yes", "no", "maybe"]
    assert [choice(a, labels) for a in ("1", " 3 ", "No", "maybe", "0", "4", "nah", "")] == \
        ["yes", "maybe", "no", "maybe", None, None, None, None]
