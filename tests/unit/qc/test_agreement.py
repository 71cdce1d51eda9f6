"""Agreement coefficients: published worked examples, the reference libraries, and when agreement flags."""

import math

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from services.qc.domain.agreement import (
    agreement,
    below_threshold,
    cohen_kappa_matrix,
    fleiss,
    krippendorff_alpha,
    label_table,
)

# Fleiss (1971), as tabulated on Wikipedia's "Fleiss' kappa" page: 10 subjects, 14 raters each,
# counts per category 1..5. The page gives P-bar = 0.378, P-bar_e = 0.213, kappa = 0.210.
FLEISS_1971 = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
# 12 units, nominal values 1-5, "." missing. The paper's nominal alpha is 0.743.
KRIPPENDORFF_2011 = {
    "A": "1 2 3 3 2 1 4 1 2 . . .",
    "B": "1 2 3 3 2 2 4 1 2 5 . 3",
    "C": ". 3 3 3 2 3 4 2 2 5 1 .",
    "D": "1 2 3 3 2 4 4 1 2 5 1 .",
}


def fleiss_records():
    """The count table as records: in each subject the 14 ratings go to raters r0..r13 in category order."""
    records = []
    for s, row in enumerate(FLEISS_1971):
        labels = [f"c{c + 1}" for c, n in enumerate(row) for _ in range(n)]
        records += [(f"s{s}", f"r{r}", label) for r, label in enumerate(labels)]
    return records


def krippendorff_records():
    return [
        (f"u{u + 1}", observer, value)
        for observer, row in KRIPPENDORFF_2011.items()
        for u, value in enumerate(row.split())
        if value != "."
    ]


def simulated(n_items=60, accuracies=(0.95, 0.9, 0.85, 0.8), k=4, seed=7):
    """Annotators who give the truth with their accuracy, else a uniformly wrong label."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n_items)
    records = []
    for a, acc in enumerate(accuracies):
        for i, t in enumerate(truth):
            label = t if rng.random() < acc else (t + rng.integers(1, k)) % k
            records.append((f"i{i}", f"a{a}", f"L{label}"))
    return records


def test_fleiss_worked_example_from_fleiss_1971():
    result = fleiss(fleiss_records())
    assert result.kappa == pytest.approx(0.20993, abs=5e-5)
    assert round(result.kappa, 3) == 0.210
    assert (result.raters, result.items_used, result.items_dropped) == (14, 10, 0)
    assert result.kappa == pytest.approx(fleiss_kappa(np.array(FLEISS_1971)), abs=1e-12)


def test_krippendorff_worked_example_with_missing_values():
    alpha = krippendorff_alpha(krippendorff_records())
    assert alpha == pytest.approx(0.743, abs=5e-4)
    # The paper's own arithmetic: 40 pairable values with marginals 9, 13, 10, 5, 3 (unit 12 has one
    # value and drops out); the off-diagonal coincidences sum to 8 (units 2, 6 and 8).
    assert alpha == pytest.approx(1 - (40 - 1) * 8 / (40**2 - (9**2 + 13**2 + 10**2 + 5**2 + 3**2)), abs=1e-12)


def test_cohen_matrix_matches_sklearn_pair_by_pair():
    records = simulated()
    matrix = cohen_kappa_matrix(records)
    table = label_table(records)
    assert matrix.annotators == ("a0", "a1", "a2", "a3")
    for a, b, kappa, shared in matrix.pairs():
        items = sorted(table)
        expected = cohen_kappa_score([table[i][a] for i in items], [table[i][b] for i in items])
        assert kappa == pytest.approx(expected, abs=1e-12)
        assert shared == 60
        assert matrix.get(b, a) == kappa
    assert matrix.get("a0", "a0") == 1.0
    # Better annotators agree more with each other than the worst pair does.
    assert matrix.get("a0", "a1") > matrix.get("a2", "a3")


def test_fleiss_and_alpha_match_the_libraries_on_complete_data():
    records = simulated()
    table = label_table(records)
    codes = {f"L{c}": c for c in range(4)}
    matrix = np.array([[codes[table[i][a]] for a in sorted(table[i])] for i in table])
    counts, _ = aggregate_raters(matrix, n_cat=4)
    assert fleiss(records).kappa == pytest.approx(fleiss_kappa(counts), abs=1e-12)
    assert krippendorff_alpha(records) == pytest.approx(
        krippendorff.alpha(reliability_data=matrix.T.astype(float), level_of_measurement="nominal"), abs=1e-12
    )


def test_fleiss_uses_only_items_with_the_modal_rater_count():
    records = simulated(n_items=30)
    # Items i0..i4 lose one rater, item i5 gains a fifth: 6 items no longer have 4 labels.
    records = [r for r in records if not (r[0] in {"i0", "i1", "i2", "i3", "i4"} and r[1] == "a3")]
    records.append(("i5", "a9", "L0"))
    result = fleiss(records)
    assert (result.raters, result.items_used, result.items_dropped) == (4, 24, 6)
    complete = [r for r in records if r[0] not in {"i0", "i1", "i2", "i3", "i4", "i5"}]
    assert result.kappa == pytest.approx(fleiss(complete).kappa, abs=1e-12)
    assert fleiss(records, raters=3).items_used == 5


def test_latest_relabel_replaces_the_earlier_label():
    records = [("x", "a", "P"), ("x", "b", "N"), ("x", "a", "N")]
    assert label_table(records) == {"x": {"a": "N", "b": "N"}}


def test_undefined_coefficients_are_none_not_nan():
    same = [(f"i{i}", a, "P") for i in range(5) for a in "ab"]
    assert krippendorff_alpha(same) is None
    assert fleiss(same).kappa is None
    assert cohen_kappa_matrix(same).get("a", "b") is None
    assert krippendorff_alpha([("i", "a", "P"), ("j", "a", "N")]) is None  # nothing pairable


def test_agreement_flags_only_what_is_low_and_well_evidenced():
    good = agreement(simulated(accuracies=(0.97, 0.96, 0.95, 0.95)))
    assert good.alpha > 0.8
    assert below_threshold(good) == ()
    noisy = simulated(accuracies=(0.95, 0.95, 0.9, 0.3))
    shortfalls = below_threshold(agreement(noisy))
    flagged_pairs = {s.annotators for s in shortfalls if s.measure == "cohen_kappa"}
    assert flagged_pairs == {("a0", "a3"), ("a1", "a3"), ("a2", "a3")}
    assert {s.measure for s in shortfalls} >= {"cohen_kappa"}
    assert all(s.value < s.threshold and s.items >= 20 for s in shortfalls)
    # The same disagreement over too few items is not evidence.
    few = [r for r in noisy if int(r[0][1:]) < 10]
    assert below_threshold(agreement(few)) == ()
    assert not math.isnan(agreement(few).alpha)
