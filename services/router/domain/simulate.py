"""A pure routing-and-learning loop over items with known truth, for benchmarks of tiers and thresholds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.router.domain.spot_check import DEFAULT_SPOT_CHECK_RATE, is_spot_checked
from services.router.domain.thresholds import NO_EVIDENCE, Observation, ThresholdChange, learn_thresholds
from services.router.domain.tiers import Prelabel, RoutingPolicy, Thresholds, Tier, decide_tier


@dataclass(frozen=True, slots=True)
class SimItem:
    """One item as the router sees it, plus the truth a benchmark knows: is the model's top-1 right?"""

    item_id: str
    top_k: tuple[tuple[str, float], ...]
    correct: bool
    nearest_similarity: float | None = None


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What one batch cost and how good its auto labels were, under the thresholds in force for it."""

    batch: int
    thresholds: Thresholds
    tiers: dict[Tier, int]
    spot_checks: int
    auto_errors: int
    evidence: int
    changes: tuple[ThresholdChange, ...]

    @property
    def auto_error_rate(self) -> float | None:
        auto = self.tiers.get(Tier.AUTO, 0)
        return self.auto_errors / auto if auto else None


def simulate(
    items: Sequence[SimItem],
    batch_size: int,
    start: Thresholds = NO_EVIDENCE,
    *,
    project: str = "sim",
    spot_check_rate: float = DEFAULT_SPOT_CHECK_RATE,
    policy: RoutingPolicy = RoutingPolicy(),
    **learn: Any,
) -> list[BatchReport]:
    """Route items batch by batch, relearning both borders from all human verifications after each batch.

    Humans are assumed to find the true label, so every reviewed or spot-checked item becomes an
    Observation with the truth; spot checks are weighted 1/rate. learn is passed to learn_thresholds.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    thresholds, evidence, reports = start, list[Observation](), []
    for number, first in enumerate(range(0, len(items), batch_size)):
        tiers: Counter[Tier] = Counter()
        spot_checks = auto_errors = 0
        for item in items[first : first + batch_size]:
            spot = is_spot_checked(project, item.item_id, spot_check_rate)
            decision = decide_tier(Prelabel(item.top_k, item.nearest_similarity), thresholds, policy, spot_check=spot)
            tiers[decision.tier] += 1
            confidence = item.top_k[0][1] if item.top_k else 0.0
            if decision.tier is Tier.AUTO:
                auto_errors += not item.correct
                if decision.spot_check:
                    spot_checks += 1
                    evidence.append(Observation(confidence, item.correct, 1 / spot_check_rate))
            elif item.top_k:
                evidence.append(Observation(confidence, item.correct))
        update = learn_thresholds(evidence, thresholds, **learn)
        reports.append(
            BatchReport(number, thresholds, dict(tiers), spot_checks, auto_errors, len(evidence), update.changes)
        )
        thresholds = update.thresholds
    return reports
