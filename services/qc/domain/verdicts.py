"""Expert verdicts on lone reviewers: evidence about an annotator that the pipeline has already paid for.

When one ordinary reviewer's label was not enough (the model found it implausible, the kNN check doubted
it, or its author was suspended), an expert labels the item. Whether the expert agreed is a measurement of
that reviewer, like a golden answer but on items chosen because they looked wrong, so it is biased against
the reviewer and gets its own, much lower bar than golden accuracy (settings.expert_agreement_threshold).

In the demo of 2026-12-03 (1,000 items, default team) the five ~90% annotators' escalated labels were
upheld 58-80% of the time and the drifter's 84%; the random clicker's 0 of 95. Golden items alone had given
the random clicker 3 answers by then, short of the 10 the suspension rule needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class VoteLike(Protocol):
    annotator: str
    label: str
    expert: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    annotator: str  # the lone ordinary reviewer the expert checked
    upheld: bool  # the expert chose the reviewer's label


def lone_reviewer_verdict(votes: Sequence[VoteLike]) -> Verdict | None:
    """The verdict an item's expert label passes on its one ordinary reviewer; None when there is no such
    pair (no expert yet, no ordinary vote, or several: a consensus item measures agreement elsewhere).

    The last expert vote is the verdict, as it is the final label (services.qc.finalize.next_step).
    """
    ordinary = [v for v in votes if not v.expert]
    experts = [v for v in votes if v.expert]
    if len(ordinary) != 1 or not experts:
        return None
    return Verdict(ordinary[0].annotator, ordinary[0].label == experts[-1].label)
