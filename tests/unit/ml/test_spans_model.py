"""The span tagger's pure parts: words, BIO <-> spans, CoNLL reading and the item confidence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labelmesh.ml.spans import (
    HASHING_WORDS,
    SpanExample,
    SpanTagger,
    bio_to_spans,
    item_raw_confidence,
    read_conll,
    spans_to_bio,
    word_features,
    words,
)
from schemas.spans import Span


def test_words_are_whitespace_tokens_with_offsets_into_the_original_text() -> None:
    text = "  Empire State\tBuilding = ESB ."
    assert [text[s:e] for s, e in words(text)] == ["Empire", "State", "Building", "=", "ESB", "."]


def test_bio_and_spans_round_trip_on_word_boundaries() -> None:
    text = "Empire State Building = ESB ."
    offsets = words(text)
    tags = ["B-location", "I-location", "I-location", "O", "B-location", "O"]
    spans = bio_to_spans(offsets, tags)
    assert [(text[s.start:s.end], s.label) for s in spans] == [("Empire State Building", "location"),
                                                              ("ESB", "location")]
    assert spans_to_bio(offsets, spans) == tags


def test_an_i_tag_of_another_type_starts_a_new_span() -> None:
    offsets = words("a b c")
    spans = bio_to_spans(offsets, ["B-person", "I-group", "I-group"], confidences=[0.9, 0.6, 0.8])
    assert [(s.start, s.end, s.label) for s in spans] == [(0, 1, "person"), (2, 5, "group")]
    assert spans[1].confidence == pytest.approx(0.7)


def test_read_conll_joins_tokens_and_maps_tags_to_character_spans(tmp_path: Path) -> None:
    path = tmp_path / "x.conll"
    path.write_text("I\tO\nlove\tO\nNew\tB-location\nYork\tI-location\n\nhi\tO\n", encoding="utf-8")
    first, second = read_conll(path)
    assert first.text == "I love New York" and second.spans == ()
    assert [(first.text[s.start:s.end], s.label) for s in first.spans] == [("New York", "location")]


def test_item_confidence_is_the_weakest_span_times_no_missed_entity() -> None:
    spans = [Span(start=0, end=1, label="x", confidence=0.9), Span(start=2, end=3, label="x", confidence=0.5)]
    assert item_raw_confidence(spans, [0.9, 0.8]) == pytest.approx(0.5 * 0.72)
    assert item_raw_confidence([], []) == 1.0


def test_the_tagger_learns_a_separable_toy_task_and_calibrates() -> None:
    # Features by hand (no encoder): a word is an entity exactly when its first feature is 1.
    rng = np.random.default_rng(0)
    examples, feats = [], []
    for n in range(200):
        marks = rng.random(5) < 0.3
        text = " ".join(f"w{n}{i}" for i in range(5))
        offs = words(text)
        spans = tuple(Span(start=offs[i][0], end=offs[i][1], label="thing") for i in range(5) if marks[i])
        examples.append(SpanExample(text, spans))
        feats.append(np.column_stack([marks.astype(float) * 4 - 2, rng.normal(size=(5, 3)) * 0.1]))
    tagger = SpanTagger(["thing"]).fit(feats, examples)
    predictions = tagger.predict([e.text for e in examples], feats)
    exact = np.mean([{(s.start, s.end) for s in p.spans} == {(s.start, s.end) for s in e.spans}
                     for p, e in zip(predictions, examples)])
    assert exact > 0.95
    assert all(0.0 <= p.confidence <= 1.0 for p in predictions)


def _toy(n_items: int = 120) -> list[SpanExample]:
    names = ["Ana", "Bo", "Cyd", "Dee", "Eli"]
    places = ["Lima", "Oslo", "Rome", "Kyiv"]
    out = []
    for n in range(n_items):
        who, where = names[n % len(names)], places[n % len(places)]
        text = f"{who} flew to {where} today" if n % 3 else "nothing happened here today"
        spans = () if n % 3 == 0 else (Span(start=0, end=len(who), label="person"),
                                       Span(start=text.index(where), end=text.index(where) + len(where),
                                            label="location"))
        out.append(SpanExample(text, spans))
    return out


def test_a_tagger_on_hashed_word_features_survives_its_artifact_without_pickle() -> None:
    examples = _toy()
    features = word_features("hashing")
    assert features.name == HASHING_WORDS
    feats = features([e.text for e in examples])
    tagger = SpanTagger(["person", "location"], features=features.name).fit(feats, examples)
    data = tagger.to_bytes()
    assert SpanTagger.is_artifact(data) and not SpanTagger.is_artifact(b"not a zip")
    assert b"pickle" not in data and data == tagger.to_bytes(), "deterministic"
    loaded = SpanTagger.from_bytes(data)
    assert loaded.features == HASHING_WORDS
    before = tagger.predict([e.text for e in examples], feats)
    after = loaded.predict([e.text for e in examples], feats)
    assert [p.spans for p in before] == [p.spans for p in after]
    assert [p.confidence for p in before] == pytest.approx([p.confidence for p in after])
    right = np.mean([{(s.start, s.end, s.label) for s in p.spans} == {(s.start, s.end, s.label) for s in e.spans}
                     for p, e in zip(after, examples)])
    assert right > 0.9


def test_a_tagger_that_saw_no_entity_tags_nothing() -> None:
    examples = [SpanExample(f"plain words {i}", ()) for i in range(5)]
    feats = word_features("hashing")([e.text for e in examples])
    tagger = SpanTagger(["person"]).fit(feats, examples)
    (p,) = SpanTagger.from_bytes(tagger.to_bytes()).predict(["Ana sings"], word_features("hashing")(["Ana sings"]))
    assert p.spans == () and p.confidence == 1.0
