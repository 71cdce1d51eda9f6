"""Annotator and project statistics as folds over counted evidence, the suspension rule, and when a pass is due."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from schemas.events import EvidenceKind
from services.qc.domain.golden import GoldenAccuracy, golden_accuracy, should_flag


class Fact(Protocol):
    """What a counted fact says (a qc.evidence event has these)."""

    @property
    def kind(self) -> EvidenceKind: ...

    @property
    def correct(self) -> bool | None: ...


@dataclass(frozen=True)
class AnnotatorTally:
    """One annotator's counts in one project; `labels` counts their ordinary (non-expert) labels."""

    labels: int = 0
    golden_n: int = 0
    golden_correct: int = 0
    verdicts_n: int = 0
    verdicts_upheld: int = 0

    def add(self, entry: Fact) -> AnnotatorTally:
        right = int(bool(entry.correct))
        if entry.kind is EvidenceKind.LABELLED:
            return replace(self, labels=self.labels + 1)
        if entry.kind is EvidenceKind.GOLDEN:
            return replace(self, golden_n=self.golden_n + 1, golden_correct=self.golden_correct + right)
        if entry.kind is EvidenceKind.VERDICT:
            return replace(self, verdicts_n=self.verdicts_n + 1, verdicts_upheld=self.verdicts_upheld + right)
        return self

    @property
    def golden(self) -> GoldenAccuracy:
        return golden_accuracy(self.golden_correct, self.golden_n)


@dataclass(frozen=True)
class ProjectTally:
    """One project's counts: every human label, items with a final label and an embedding (what the label-error
    pass reads), and spot-checked auto labels."""

    labels: int = 0
    finals: int = 0
    spot_n: int = 0
    spot_correct: int = 0

    def add(self, entry: Fact) -> ProjectTally:
        if entry.kind is EvidenceKind.LABELLED:
            return replace(self, labels=self.labels + 1)
        if entry.kind is EvidenceKind.FINALIZED:
            return replace(self, finals=self.finals + 1)
        if entry.kind is EvidenceKind.SPOT_CHECK:
            return replace(self, spot_n=self.spot_n + 1, spot_correct=self.spot_correct + int(bool(entry.correct)))
        return self


@dataclass(frozen=True)
class SuspensionRule:
    golden_threshold: float
    golden_min_evidence: int
    verdict_threshold: float
    verdict_min_evidence: int


@dataclass(frozen=True)
class Suspension:
    """Why an annotator is suspended: the flag's message and evidence, and what the items sent back say."""

    message: str
    evidence: dict[str, Any]
    why: str
    review_evidence: dict[str, Any]


def suspension(tally: AnnotatorTally, entry: Fact, rule: SuspensionRule) -> Suspension | None:
    """Whether the evidence just counted (golden answers, expert verdicts) suspends the annotator now."""
    if entry.kind is EvidenceKind.GOLDEN:
        acc = tally.golden
        if not should_flag(acc, threshold=rule.golden_threshold, min_evidence=rule.golden_min_evidence):
            return None
        return Suspension(
            f"golden accuracy {acc.accuracy:.0%} over {acc.n} items (95% interval {acc.lower:.0%}-{acc.upper:.0%}) "
            f"is below {rule.golden_threshold:.0%}",
            {"golden_n": acc.n, "golden_correct": tally.golden_correct, "lower": acc.lower, "upper": acc.upper,
             "threshold": rule.golden_threshold},
            f"golden accuracy {acc.accuracy:.0%}", {"golden_accuracy": acc.accuracy},
        )
    if entry.kind is EvidenceKind.VERDICT:
        upheld = golden_accuracy(tally.verdicts_upheld, tally.verdicts_n)
        if not should_flag(upheld, threshold=rule.verdict_threshold, min_evidence=rule.verdict_min_evidence):
            return None
        return Suspension(
            f"experts upheld {upheld.accuracy:.0%} of {upheld.n} labels of theirs that were escalated (95% "
            f"interval {upheld.lower:.0%}-{upheld.upper:.0%}), below {rule.verdict_threshold:.0%}",
            {"verdicts_n": upheld.n, "verdicts_upheld": tally.verdicts_upheld, "lower": upheld.lower,
             "upper": upheld.upper, "threshold": rule.verdict_threshold},
            f"experts upheld {upheld.accuracy:.0%} of their escalated labels", {"expert_upheld": upheld.accuracy},
        )
    return None


def fold_annotator(tally: AnnotatorTally, entries: Iterable[Fact], rule: SuspensionRule,
                   suspended: bool) -> tuple[AnnotatorTally, Suspension | None]:
    """Count entries in order, checking the rule after each one, as if each had come alone: the suspension's
    evidence is the count at which it was first due, whatever the batch. Nothing new once suspended."""
    decided: Suspension | None = None
    for entry in entries:
        tally = tally.add(entry)
        if not suspended and decided is None:
            decided = suspension(tally, entry, rule)
    return tally, decided


def fold_project(tally: ProjectTally, entries: Iterable[Fact]) -> ProjectTally:
    for entry in entries:
        tally = tally.add(entry)
    return tally


def crossed(new: int, added: int, every: int) -> bool:
    """Did a counter that just grew by `added` to `new` pass a multiple of `every`?"""
    return every > 0 and added > 0 and new // every > (new - added) // every


def growing_pass(new: int, added: int, every: int, growth: float) -> int | None:
    """The number of the last pass due at a point in (new - added, new], or None. The points are `every`, then
    each at least `every` after the last and at least `growth` times larger: multiples of `every` while the
    project is small, then geometric, so a pass that reads all of a project's items costs O(n log n) in all
    over its life instead of O(n^2). growth=0 gives the multiples of `every` (pass k at k * every)."""
    if every <= 0 or added <= 0 or new < every:
        return None
    point, number, last = every, 1, None
    while point <= new:
        if point > new - added:
            last = number
        point = max(point + every, math.ceil(point * (1 + growth)))
        number += 1
    return last
