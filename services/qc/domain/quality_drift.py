"""Quality drift: how often an annotator agrees with a reference label they did not give, now vs baseline and crowd.

drift.py watches which labels an annotator uses. An annotator whose answers get worse without
changing which labels they use (fatigue on a balanced taxonomy, errors landing on confusable
neighbours) leaves that distribution alone. Their rate of agreeing with an independent reference
does not: the reference here is whatever the caller passes per label (qc uses the model's top-1
pre-label, which no annotator influences and which every item has). Windows are counted in the
annotator's own labels, as in drift.py. The test is one-sided (only a drop flags): Fisher's exact
test on the 2x2 table (window vs reference, agree vs not).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from scipy.stats import fisher_exact

Against = Literal["baseline", "crowd"]

# Per window, strict for the same reason as drift.DEFAULT_ALPHA: overlapping windows are tested again and again.
DEFAULT_ALPHA = 0.0001
# The drop must also be material: 20 points of agreement with the reference.
DEFAULT_MIN_DROP = 0.20
DEFAULT_BASELINE = 50
DEFAULT_WINDOW = 50
DEFAULT_STEP = 10


@dataclass(frozen=True, slots=True)
class AgreementDrift:
    """One window's test; what qc.flagged (kind drift) carries as evidence when significant.

    [start, end) are positions in the annotator's own label sequence.
    """

    against: Against
    start: int
    end: int
    rate: float  # agreement with the reference in the window
    reference_rate: float
    p_value: float
    significant: bool
    message: str


def agreement_drop(
    window: Sequence[bool],
    reference_agree: int,
    reference_n: int,
    *,
    against: Against = "baseline",
    start: int = 0,
    alpha: float = DEFAULT_ALPHA,
    min_drop: float = DEFAULT_MIN_DROP,
) -> AgreementDrift:
    """Is the window's agreement rate lower than the reference's? Significant when p < alpha and drop >= min_drop."""
    if not window or reference_n <= 0:
        raise ValueError("both the window and the reference need at least one outcome")
    if not 0 <= reference_agree <= reference_n:
        raise ValueError(f"need 0 <= reference_agree <= reference_n, got {reference_agree}, {reference_n}")
    agree = sum(1 for x in window if x)
    n = len(window)
    table = [[agree, n - agree], [reference_agree, reference_n - reference_agree]]
    p_value = float(fisher_exact(table, alternative="less").pvalue)
    rate, ref = agree / n, reference_agree / reference_n
    significant = p_value < alpha and ref - rate >= min_drop
    end = start + n
    who = "their first labels" if against == "baseline" else "the crowd"
    message = (f"labels {start}-{end - 1} agree with the reference {rate:.0%} of the time vs {ref:.0%} for {who}, "
               f"p={p_value:.2g}")
    return AgreementDrift(against, start, end, rate, ref, p_value, significant, message)


def scan_agreement(
    outcomes: Sequence[bool],
    *,
    crowd: tuple[int, int] | None = None,
    baseline: int = DEFAULT_BASELINE,
    window: int = DEFAULT_WINDOW,
    step: int = DEFAULT_STEP,
    alpha: float = DEFAULT_ALPHA,
    min_drop: float = DEFAULT_MIN_DROP,
) -> list[AgreementDrift]:
    """Every sliding window of one annotator's outcomes (True = agreed with the reference), in the order given.

    crowd is (agreed, total) over everyone else's labels. Crowd windows start at 0 (a random
    answerer has no clean baseline); baseline windows start after the first `baseline` outcomes.
    """
    if min(baseline, window, step) < 1:
        raise ValueError("baseline, window and step must be >= 1")
    findings = []
    if crowd is not None and crowd[1] > 0:
        for s in range(0, len(outcomes) - window + 1, step):
            findings.append(agreement_drop(outcomes[s:s + window], crowd[0], crowd[1], against="crowd", start=s,
                                           alpha=alpha, min_drop=min_drop))
    if len(outcomes) >= baseline + window:
        own = sum(1 for x in outcomes[:baseline] if x)
        for s in range(baseline, len(outcomes) - window + 1, step):
            findings.append(agreement_drop(outcomes[s:s + window], own, baseline, start=s, alpha=alpha,
                                           min_drop=min_drop))
    return sorted(findings, key=lambda f: (f.end, f.against))


def first_drop(findings: Iterable[AgreementDrift], against: Against | None = None) -> AgreementDrift | None:
    """The significant finding whose window ends earliest (optionally against one reference)."""
    hits = [f for f in findings if f.significant and (against is None or f.against == against)]
    return min(hits, key=lambda f: f.end) if hits else None
