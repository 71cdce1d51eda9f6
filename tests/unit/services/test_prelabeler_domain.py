"""The prelabeler's pure rules: pre-labels per project's model, cold-start fields and re-pre-labels."""

from __future__ import annotations

import numpy as np

from labelmesh.ml.spans import SpanPrediction
from schemas.events import ItemIngested, TextPayload
from schemas.spans import SPANS_LABEL, Span
from labelmesh.ml.artifact import ActiveModel
from services.prelabeler.domain.prelabel import cold_fields, needs_model, prelabels, reprelabels, span_reprelabels


class _Head:  # the one method pre-labelling uses: ranked (label, probability) per row
    def top_k(self, X: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        return [[("a", 1.0000001), ("b", -1e-9)][:k] for _ in range(len(X))]


def _item(project: str, item_id: str, **extra: str) -> ItemIngested:
    return ItemIngested(producer="t", project=project, item_id=item_id, payload=TextPayload(text="x"), **extra)


def test_each_project_is_prelabelled_by_its_own_model_or_waits_without_one() -> None:
    items = [_item("p", "1"), _item("q", "2"), _item("q", "3", golden_label="a")]
    vectors = np.array([[0.1234567, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    out = prelabels(items, [False, True, False], vectors, {"p": ActiveModel(4, _Head()), "q": None}, 2, "pl", "enc")
    assert [(e.item_id, e.model_version) for e in out] == [("1", 4), ("2", None), ("3", None)]
    assert [(s.label, s.probability) for s in out[0].top_k] == [("a", 1.0), ("b", 0.0)], "clipped into [0, 1]"
    assert out[1].top_k == () and out[1].truncated and not out[0].truncated
    assert out[0].embedding[0] == 0.123457, "six decimals"
    assert out[0].event_id != items[0].event_id and out[0].correlation_id == items[0].event_id
    assert [needs_model(e) for e in out] == [False, True, False], "a golden item never waits for a model"


def test_a_cold_item_gets_the_arriving_model_s_prelabel_with_an_id_per_version() -> None:
    first = prelabels([_item("q", "2")], [True], np.array([[0.5, 0.5]], dtype=np.float32), {"q": None}, 2, "pl",
                      "enc")[0]
    doc = {**cold_fields(first, np.array([0.5, 0.5])), "event_id": first.event_id}
    v1, again, v2 = (reprelabels([doc], ActiveModel(v, _Head()), 1, "pl")[0] for v in (1, 1, 2))
    assert v1.model_version == 1 and [s.label for s in v1.top_k] == ["a"] and v1.truncated
    assert v1.event_id == again.event_id != v2.event_id, "a redelivered model publishes the same event"
    assert v1.embedding == (0.5, 0.5) and v1.encoder == "enc"


def test_a_cold_spans_item_keeps_its_text_and_gets_the_first_tagger_s_spans() -> None:
    first = prelabels([_item("ner", "2")], [False], np.array([[0.5, 0.5]], dtype=np.float32), {"ner": None}, 2,
                      "pl", "enc")[0]
    assert "text" not in cold_fields(first, np.array([0.5, 0.5])), "a classification item keeps no text"
    doc = {**cold_fields(first, np.array([0.5, 0.5]), "Ana flew"), "event_id": first.event_id}
    assert doc["text"] == "Ana flew"
    ana = Span(start=0, end=3, label="person", confidence=0.9)
    tagger = ActiveModel(1, None, tagger=object())  # type: ignore[arg-type]  # span_reprelabels only checks it is there
    (v1,) = span_reprelabels([doc], tagger, [SpanPrediction((ana,), 0.8, 0.7)], "pl")
    assert (v1.model_version, v1.spans, [(s.label, s.probability) for s in v1.top_k]) == (1, (ana,), [
        (SPANS_LABEL, 0.8)])
    assert v1.event_id == reprelabels([doc], ActiveModel(1, _Head()), 1, "pl")[0].event_id, "one id per version"
    assert v1.embedding == (0.5, 0.5)
