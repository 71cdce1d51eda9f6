"""Inter-annotator agreement over multiply-labelled items: pairwise Cohen's kappa, Fleiss' kappa, Krippendorff's alpha.

Input everywhere is a sequence of (item_id, annotator_id, label) records, in the order they happened.
When one annotator labelled one item more than once, the latest record counts (a relabel replaces).
A project or a time window is chosen by the caller, by passing only that slice of records.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations

import krippendorff
import numpy as np
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa as _fleiss_kappa

Record = tuple[str, str, str]  # (item_id, annotator_id, label)

# Landis & Koch (1977) call 0.61-0.80 "substantial"; Krippendorff (2004) accepts alpha >= 0.800 and
# allows tentative conclusions from 0.667. Below these, retrain annotators or revise the guidelines.
DEFAULT_MIN_KAPPA = 0.60
DEFAULT_MIN_ALPHA = 0.667
# A kappa over a handful of items is noise; fewer shared items than this and a measure never flags.
DEFAULT_MIN_ITEMS = 20


def label_table(records: Iterable[Record]) -> dict[str, dict[str, str]]:
    """item -> annotator -> label, the latest record winning, items in first-seen order."""
    table: dict[str, dict[str, str]] = {}
    for item, annotator, label in records:
        table.setdefault(item, {})[annotator] = label
    return table


def _defined(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True, slots=True)
class KappaMatrix:
    """Cohen's kappa for every pair of annotators over the items both labelled.

    values[i][j] is None where the pair shares fewer than min_shared items or kappa is undefined
    (both used one and the same label throughout, so chance agreement is 1). The diagonal is 1.0.
    """

    annotators: tuple[str, ...]
    values: tuple[tuple[float | None, ...], ...]
    shared: tuple[tuple[int, ...], ...]

    def get(self, a: str, b: str) -> float | None:
        return self.values[self.annotators.index(a)][self.annotators.index(b)]

    def pairs(self) -> list[tuple[str, str, float | None, int]]:
        """(a, b, kappa, shared items) for each unordered pair, a before b in annotator order."""
        n = len(self.annotators)
        return [
            (self.annotators[i], self.annotators[j], self.values[i][j], self.shared[i][j])
            for i, j in combinations(range(n), 2)
        ]

    def mean(self) -> float | None:
        """Mean kappa over the defined pairs (Light's kappa when every pair is defined)."""
        defined = [k for _, _, k, _ in self.pairs() if k is not None]
        return float(np.mean(defined)) if defined else None


def cohen_kappa_matrix(records: Iterable[Record], *, min_shared: int = 2) -> KappaMatrix:
    """Pairwise Cohen's kappa (sklearn.metrics.cohen_kappa_score) between all annotators, sorted by id."""
    table = label_table(records)
    annotators = tuple(sorted({a for labels in table.values() for a in labels}))
    n = len(annotators)
    values: list[list[float | None]] = [[1.0 if i == j else None for j in range(n)] for i in range(n)]
    shared = [[0] * n for _ in range(n)]
    for i, j in combinations(range(n), 2):
        a, b = annotators[i], annotators[j]
        both = [(labels[a], labels[b]) for labels in table.values() if a in labels and b in labels]
        shared[i][j] = shared[j][i] = len(both)
        if len(both) < min_shared:
            continue
        ya, yb = zip(*both)
        if len(set(ya) | set(yb)) < 2:
            kappa = None  # one label used by both: observed and chance agreement are both 1
        else:
            kappa = _defined(cohen_kappa_score(ya, yb))
        values[i][j] = values[j][i] = kappa
    for i, a in enumerate(annotators):
        shared[i][i] = sum(1 for labels in table.values() if a in labels)
    return KappaMatrix(annotators, tuple(map(tuple, values)), tuple(map(tuple, shared)))


@dataclass(frozen=True, slots=True)
class FleissResult:
    """Fleiss' kappa over the items that had exactly `raters` labels; the others are counted, not used."""

    kappa: float | None
    raters: int
    items_used: int
    items_dropped: int


def fleiss(records: Iterable[Record], *, raters: int | None = None) -> FleissResult:
    """Fleiss' kappa (statsmodels fleiss_kappa over aggregate_raters).

    Fleiss' formula assumes every item has the same number of raters, and statsmodels silently
    uses the largest row total when they differ, which biases the result. So only items with
    exactly `raters` labels are used; by default `raters` is the most common count among items
    with at least two labels (the larger on a tie). Items with other counts are reported in
    items_dropped. Krippendorff's alpha (below) uses every item, whatever its number of labels.
    """
    table = label_table(records)
    counts = Counter(len(labels) for labels in table.values() if len(labels) >= 2)
    if raters is None:
        raters = max(counts, key=lambda c: (counts[c], c)) if counts else 0
    if raters < 2:
        return FleissResult(None, raters, 0, len(table))
    rows = [list(labels.values()) for labels in table.values() if len(labels) == raters]
    dropped = len(table) - len(rows)
    if not rows:
        return FleissResult(None, raters, 0, dropped)
    categories = sorted({label for row in rows for label in row})
    if len(categories) < 2:
        return FleissResult(None, raters, len(rows), dropped)  # one label everywhere: undefined
    codes = {label: code for code, label in enumerate(categories)}
    counts_table, _ = aggregate_raters(np.array([[codes[x] for x in row] for row in rows]), n_cat=len(categories))
    return FleissResult(_defined(_fleiss_kappa(counts_table)), raters, len(rows), dropped)


def krippendorff_alpha(records: Iterable[Record]) -> float | None:
    """Krippendorff's alpha, nominal, with missing values (the `krippendorff` package).

    Items with a single label carry no pairable values and are ignored by the coefficient itself.
    None when it is undefined: fewer than two distinct labels, or no item with two labels.
    """
    table = label_table(records)
    annotators = sorted({a for labels in table.values() for a in labels})
    categories = sorted({label for labels in table.values() for label in labels.values()})
    if len(categories) < 2 or not any(len(labels) >= 2 for labels in table.values()):
        return None
    codes = {label: float(code) for code, label in enumerate(categories)}
    rows = {a: r for r, a in enumerate(annotators)}
    data = np.full((len(annotators), len(table)), np.nan)
    for column, labels in enumerate(table.values()):
        for annotator, label in labels.items():
            data[rows[annotator], column] = codes[label]
    return _defined(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))


@dataclass(frozen=True, slots=True)
class AgreementReport:
    """All three coefficients over one slice of records (a project, a time window)."""

    items: int
    multiply_labelled: int
    kappa: KappaMatrix
    fleiss: FleissResult
    alpha: float | None


def agreement(records: Iterable[Record], *, min_shared: int = 2) -> AgreementReport:
    """Compute every coefficient over the same records."""
    rows = list(records)
    table = label_table(rows)
    return AgreementReport(
        items=len(table),
        multiply_labelled=sum(1 for labels in table.values() if len(labels) >= 2),
        kappa=cohen_kappa_matrix(rows, min_shared=min_shared),
        fleiss=fleiss(rows),
        alpha=krippendorff_alpha(rows),
    )


@dataclass(frozen=True, slots=True)
class Shortfall:
    """One coefficient under its threshold: what qc.flagged (kind low_agreement) carries as evidence."""

    measure: str  # "krippendorff_alpha" | "fleiss_kappa" | "cohen_kappa"
    value: float
    threshold: float
    items: int
    annotators: tuple[str, ...] = ()  # the pair, for cohen_kappa


def below_threshold(
    report: AgreementReport,
    *,
    min_alpha: float = DEFAULT_MIN_ALPHA,
    min_kappa: float = DEFAULT_MIN_KAPPA,
    min_items: int = DEFAULT_MIN_ITEMS,
) -> tuple[Shortfall, ...]:
    """Every coefficient under its threshold, computed over at least min_items items; empty when all is well.

    Undefined coefficients never flag. Alpha is judged over the multiply-labelled items, Fleiss over
    the items it used, each Cohen pair over the items that pair shares (a low pair says which two
    annotators read the guidelines differently).
    """
    out: list[Shortfall] = []
    if report.alpha is not None and report.multiply_labelled >= min_items and report.alpha < min_alpha:
        out.append(Shortfall("krippendorff_alpha", report.alpha, min_alpha, report.multiply_labelled))
    f = report.fleiss
    if f.kappa is not None and f.items_used >= min_items and f.kappa < min_kappa:
        out.append(Shortfall("fleiss_kappa", f.kappa, min_kappa, f.items_used))
    for a, b, kappa, shared in report.kappa.pairs():
        if kappa is not None and shared >= min_items and kappa < min_kappa:
            out.append(Shortfall("cohen_kappa", kappa, min_kappa, shared, (a, b)))
    return tuple(out)
