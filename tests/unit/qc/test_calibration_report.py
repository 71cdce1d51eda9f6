"""Calibration report: per-item disagreement numbers, ranking, coefficients, and the markdown it renders."""

import math

import pytest

from services.qc.domain.agreement import cohen_kappa_matrix, fleiss, krippendorff_alpha
from services.qc.domain.calibration_report import calibration_report, item_disagreement

# Four annotators, six items: two unanimous, one 3-1, one 2-2 tie, one 2-1-1, one all different.
SESSION = {
    "t1": {"ann": "refund", "bo": "refund", "cy": "refund", "di": "refund"},
    "t2": {"ann": "card_lost", "bo": "card_lost", "cy": "card_lost", "di": "card_lost"},
    "t3": {"ann": "refund", "bo": "refund", "cy": "refund", "di": "card_lost"},
    "t4": {"ann": "refund", "bo": "card_lost", "cy": "refund", "di": "card_lost"},
    "t5": {"ann": "top_up", "bo": "top_up", "cy": "refund", "di": "card_lost"},
    "t6": {"ann": "top_up", "bo": "refund", "cy": "card_lost", "di": "fx_rate"},
}
RECORDS = [(item, a, label) for item, labels in SESSION.items() for a, label in labels.items()]


def test_item_disagreement_numbers():
    t3 = item_disagreement("t3", SESSION["t3"])
    assert (t3.majority_label, t3.disagreement, t3.tied) == ("refund", 0.25, False)
    assert t3.entropy == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))
    t4 = item_disagreement("t4", SESSION["t4"])
    assert t4.tied and t4.majority_label == "card_lost" and t4.disagreement == 0.5 and t4.entropy == 1.0
    t6 = item_disagreement("t6", SESSION["t6"])
    assert t6.disagreement == 0.75 and t6.entropy == 2.0
    assert item_disagreement("t1", SESSION["t1"]).entropy == 0.0


def test_report_ranks_items_and_reuses_the_agreement_coefficients():
    report = calibration_report(RECORDS)
    assert [i.item_id for i in report.items] == ["t6", "t5", "t4", "t3", "t1", "t2"]
    assert [i.item_id for i in report.most_disputed(3)] == ["t6", "t5", "t4"]
    assert len(report.most_disputed()) == 4  # unanimous items are never "disputed"
    assert report.unanimous_share == pytest.approx(2 / 6)
    assert report.fleiss == fleiss(RECORDS)
    assert report.alpha == krippendorff_alpha(RECORDS)
    assert report.kappa == cohen_kappa_matrix(RECORDS)
    assert report.incomplete == ()


def test_markdown_shows_the_matrix_the_coefficients_and_the_disputes():
    report = calibration_report(RECORDS)
    md = report.to_markdown(top=2)
    assert md.startswith("# Calibration session\n")
    assert "4 annotators, 6 items, 33% unanimous." in md
    assert f"Fleiss' kappa: {report.fleiss.kappa:.3f} (over 6 items with 4 labels each)" in md
    assert f"Krippendorff's alpha (nominal): {report.alpha:.3f}" in md
    assert "| | ann | bo | cy | di |" in md
    ann_bo = report.kappa.get("ann", "bo")
    assert f"| ann | — | {ann_bo:.3f} |" in md
    assert "| t6 | card_lost (tie) | 75% | 2.00 | card_lost ×1, fx_rate ×1, refund ×1, top_up ×1 |" in md
    # Equal disagreement: three labels in play (t5) ranks above a two-way tie (t4) by entropy.
    assert "| t5 | top_up | 50% | 1.50 | top_up ×2, card_lost ×1, refund ×1 |" in md
    assert "| t4 |" not in md  # only the top 2


def test_missing_labels_are_reported_and_unanimity_renders():
    partial = [r for r in RECORDS if not (r[0] == "t2" and r[1] == "di")]
    report = calibration_report(partial)
    assert report.incomplete == ("t2",)
    assert report.fleiss.items_used == 5 and report.fleiss.items_dropped == 1
    assert "Not labelled by everyone: t2" in report.to_markdown()
    unanimous = calibration_report([(f"i{n}", a, "x" if n % 2 else "y") for n in range(4) for a in "ab"])
    md = unanimous.to_markdown()
    assert "Every item was labelled unanimously." in md and "100% unanimous" in md
    with pytest.raises(ValueError):
        calibration_report([])
