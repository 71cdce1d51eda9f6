"""A verified spans pre-label is right only if every span is (range and type, confidence aside)."""

from schemas.spans import Span
from services.router.domain.evidence import prelabel_correct

ANA, LIMA = Span(start=0, end=3, label="person"), Span(start=12, end=16, label="location")


def test_a_class_pre_label_is_judged_by_its_label_as_before() -> None:
    assert prelabel_correct("a", "a") is True and prelabel_correct("a", "b") is False


def test_a_spans_pre_label_is_wrong_if_any_span_differs_or_is_missing() -> None:
    assert prelabel_correct("x", "x", [ANA.model_copy(update={"confidence": 0.2}), LIMA], (LIMA, ANA)) is True
    assert prelabel_correct("x", "x", [ANA], (ANA, LIMA)) is False
    assert prelabel_correct("x", "x", [ANA, LIMA], (ANA,)) is False
    assert prelabel_correct("x", "x", [ANA.model_copy(update={"end": 4})], (ANA,)) is False
    assert prelabel_correct("x", "x", [ANA.model_dump()], (ANA,)) is True, "stored spans are documents"
    assert prelabel_correct("x", "x", None, (ANA,)) is None, "pre-labelled spans unknown: no evidence"
