"""The calibration-session report: where annotators labelling the same items disagree, for the pre-campaign talk."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from services.qc.domain.agreement import (
    FleissResult,
    KappaMatrix,
    Record,
    cohen_kappa_matrix,
    fleiss,
    krippendorff_alpha,
    label_table,
)

DEFAULT_TOP = 10


@dataclass(frozen=True, slots=True)
class ItemDisagreement:
    """One item's labels: the majority (first by label on a tie), the share not agreeing with it, the entropy."""

    item_id: str
    majority_label: str
    tied: bool
    disagreement: float  # share of annotators not choosing the majority label
    entropy: float  # bits; 0 when unanimous, log2(n) when everyone differs
    counts: tuple[tuple[str, int], ...]  # most chosen first
    labels: tuple[tuple[str, str], ...]  # (annotator, label), by annotator


def item_disagreement(item_id: str, labels: dict[str, str]) -> ItemDisagreement:
    """Disagreement and entropy of one item's labels (annotator -> label)."""
    if not labels:
        raise ValueError(f"item {item_id!r} has no labels")
    counts = sorted(Counter(labels.values()).items(), key=lambda kv: (-kv[1], kv[0]))
    n = len(labels)
    top = counts[0][1]
    entropy = -sum(c / n * math.log2(c / n) for _, c in counts)
    return ItemDisagreement(
        item_id=item_id,
        majority_label=counts[0][0],
        tied=len(counts) > 1 and counts[1][1] == top,
        disagreement=1 - top / n,
        entropy=entropy + 0.0,  # turns -0.0 into 0.0
        counts=tuple(counts),
        labels=tuple(sorted(labels.items())),
    )


@dataclass(frozen=True, slots=True)
class CalibrationReport:
    """Everything a team discusses after a calibration session; to_markdown() renders it."""

    annotators: tuple[str, ...]
    items: tuple[ItemDisagreement, ...]  # most disputed first
    incomplete: tuple[str, ...]  # items not labelled by every annotator
    kappa: KappaMatrix
    fleiss: FleissResult
    alpha: float | None

    @property
    def unanimous_share(self) -> float:
        return sum(1 for i in self.items if i.disagreement == 0) / len(self.items) if self.items else 0.0

    def most_disputed(self, top: int = DEFAULT_TOP) -> tuple[ItemDisagreement, ...]:
        """The top items with any disagreement, most disputed first."""
        return tuple(i for i in self.items if i.disagreement > 0)[:top]

    def to_markdown(self, top: int = DEFAULT_TOP) -> str:
        def num(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.3f}"

        lines = [
            "# Calibration session",
            "",
            f"{len(self.annotators)} annotators, {len(self.items)} items, "
            f"{self.unanimous_share:.0%} unanimous.",
            "",
            f"- Fleiss' kappa: {num(self.fleiss.kappa)} (over {self.fleiss.items_used} items"
            f" with {self.fleiss.raters} labels each)",
            f"- Krippendorff's alpha (nominal): {num(self.alpha)}",
            f"- Mean pairwise Cohen's kappa: {num(self.kappa.mean())}",
        ]
        if self.incomplete:
            lines.append(f"- Not labelled by everyone: {', '.join(self.incomplete)}")
        lines += ["", "## Pairwise Cohen's kappa", ""]
        lines.append("| | " + " | ".join(self.kappa.annotators) + " |")
        lines.append("|---" * (len(self.kappa.annotators) + 1) + "|")
        for a, row in zip(self.kappa.annotators, self.kappa.values):
            lines.append(f"| {a} | " + " | ".join("—" if a == b else num(v) for b, v in
                                                  zip(self.kappa.annotators, row)) + " |")
        disputed = self.most_disputed(top)
        lines += ["", f"## Most disputed items (top {len(disputed)})", ""]
        if not disputed:
            lines.append("Every item was labelled unanimously.")
        else:
            lines.append("| item | majority | disagreement | entropy (bits) | labels |")
            lines.append("|---|---|---|---|---|")
            for i in disputed:
                spread = ", ".join(f"{label} ×{count}" for label, count in i.counts)
                majority = f"{i.majority_label} (tie)" if i.tied else i.majority_label
                lines.append(f"| {i.item_id} | {majority} | {i.disagreement:.0%} | {i.entropy:.2f} | {spread} |")
        return "\n".join(lines) + "\n"


def calibration_report(records: Iterable[Record]) -> CalibrationReport:
    """Build the report from a session's (item_id, annotator_id, label) records; the latest label per pair counts.

    Items are ranked by disagreement, then entropy, then id. Fleiss' kappa is computed over the
    items everyone labelled; Cohen's and Krippendorff's use every label.
    """
    rows = list(records)
    table = label_table(rows)
    if not table:
        raise ValueError("a calibration session needs at least one label")
    annotators = tuple(sorted({a for labels in table.values() for a in labels}))
    items = sorted(
        (item_disagreement(item, labels) for item, labels in table.items()),
        key=lambda i: (-i.disagreement, -i.entropy, i.item_id),
    )
    incomplete = tuple(item for item, labels in table.items() if len(labels) < len(annotators))
    return CalibrationReport(
        annotators=annotators,
        items=tuple(items),
        incomplete=incomplete,
        kappa=cohen_kappa_matrix(rows),
        fleiss=fleiss(rows, raters=len(annotators)),
        alpha=krippendorff_alpha(rows),
    )
