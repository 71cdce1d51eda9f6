"""Learns the auto-accept and single-review borders from human-verified pre-labels, with confidence bounds.

Conventions, chosen once and used everywhere here:
- Bounds are ONE-SIDED. The question is only "is the error rate below the target?", so the 95% upper
  bound is the 95th percentile (= the upper end of a two-sided 90% interval). 0 errors in 150 gives
  0.0198 (Clopper-Pearson); it takes 149 clean verifications before a 2% target can be met at all.
- Regions match decide_tier exactly: the auto region of t is confidence > t; the single band of t
  under auto border a is t <= confidence <= a.
- Observation.weight is the inverse of the chance the item was verified (1/spot-check rate for spot
  checks on auto items, 1 for reviewed tiers). Without it the 100%-reviewed band just below the auto
  border would outweigh the 8%-sampled auto items 12.5 to 1. Weighted counts enter the bound through
  the Kish effective sample size (Korn & Graubard 1998); with equal weights it is the plain bound.
- A border only moves down through grid cells that contain verified items (no extrapolation).
- The learner scans a fixed grid and takes the lowest passing threshold. That is a selection over
  several tests; the regions are nested, so the tests are strongly correlated, and a threshold only
  moves when its own region's bound is under target. Use a coarser grid for more caution.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal

import numpy as np
from scipy.special import betaincinv
from scipy.stats import norm

from schemas.events import SEED_AUTO_ACCEPT, SEED_SINGLE_REVIEW, Thresholds

Method = Literal["clopper-pearson", "wilson"]

DEFAULT_TARGET_AUTO_ERROR = 0.02
# One reviewer looking at a wrong pre-label misses it some of the time (anchoring). If a reviewer
# catches ~90% of wrong pre-labels, a band whose pre-labels are wrong at most 20% of the time ends
# at ~2% final error, the same target as auto labels. For a calibrated model with confidences spread
# over [0.70, 0.95] the band's error is ~17.5%, so 0.20 roughly reproduces the seed's 0.70 border.
# qc's measured miss rate should replace the 90% assumption per project.
DEFAULT_TARGET_SINGLE_ERROR = 0.20
# Below 0.5 the model's label is more likely wrong than right: never safe to auto-accept, whatever the
# evidence says. (The single band's floor is separate: see DEFAULT_SINGLE_FLOOR.)
DEFAULT_FLOOR = 0.50
# How low one reviewer may be asked to check a pre-label. When qc weighs the lone reviewer against the
# model's top-k (qc's review_with_model) and sends an unconvincing override to an expert, a wrong draft
# costs one expert label, not a wrong final label, so one reviewer plus an expert on doubt is cheaper
# than a consensus of several. That holds below where the draft is right half the time too: the posterior
# then rests mostly on the reviewer, a doubtful label costs one expert label (~2 labels for the item), and a
# consensus of three costs 3+. bench/quality.py (90% annotators, seeds 0-2, targets 0.04-0.08): a floor of
# 0.15 instead of 0.30 cost 0.009 fewer labels per item at 0.03 points lower accuracy on average; 0.01 gave
# exactly the same runs as 0.15 in those side runs. Several annotators labelling from
# scratch remain for items with no usable pre-label.
DEFAULT_SINGLE_FLOOR = 0.15
# The auto border's own error: the pre-labels just above it, in a band BORDER_BAND wide, may be wrong at most this
# often (one-sided upper bound), whatever the auto region's average. The average over the region is dominated by
# the many near-certain items at the top, so a learner held to it alone keeps lowering the border, past where the
# model's pre-labels are 10-15% wrong, for as long as those items keep the average under target: how far it gets
# depends on how lucky the spot checks were (bench/quality.py, --check-seeds). A reviewer, at ~1.3 labels per
# item with escalations, fixes most of the errors at such a border; see RouterSettings.auto_border_error.
DEFAULT_BORDER_BAND = 0.05
# Fewer verified items than this in a region and the region is not tested at all.
DEFAULT_MIN_EVIDENCE = 50
DEFAULT_GRID: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(1, 100))  # 0.01 .. 0.99; floors cut it
# How far both borders rise when qc flags the model as bad (RouterSettings.conservative_shift).
DEFAULT_CONSERVATIVE_SHIFT = 0.02
AUTO_OFF = 1.0  # confidence > 1.0 never happens: no item is auto-accepted
# Where a project's borders stand before any evidence: auto-accept off. The seed's 0.95 is a number from a
# document, not an observation: the live BANKING77 demo auto-accepted 29% of its items on it at 2.9% error against a
# 2% target, and a taxonomy with many more classes (a few bootstrap labels each) about three times the target. The
# auto border comes down only where the router's verified pre-labels show its region under target
# (learn_auto_threshold walks down from here through verified cells only; starting_thresholds keeps a trainer's
# recommendation from lowering it), so the guarantee holds from the first item. Until then the single band reviews
# what would have been auto-accepted, and those reviews are the evidence. The single border keeps the seed's
# (starting_thresholds lowers it to RouterSettings.single_start).
NO_EVIDENCE = Thresholds(auto_accept=AUTO_OFF, single_review=SEED_SINGLE_REVIEW)


class Border(StrEnum):
    AUTO_ACCEPT = "auto_accept"
    SINGLE_REVIEW = "single_review"


@dataclass(frozen=True, slots=True)
class Observation:
    """A model prediction a human checked: its calibrated top-1 confidence and whether it was right."""

    confidence: float
    correct: bool
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")
        if not self.weight > 0.0:
            raise ValueError(f"weight must be > 0 (inverse of the chance it was verified), got {self.weight}")


@dataclass(frozen=True, slots=True)
class ThresholdChange:
    """One border's learning outcome (new == old when kept), with the evidence behind it, for storage."""

    border: Border
    old: float
    new: float
    reason: str
    n: int = 0
    errors: int = 0
    bound: float | None = None
    target: float | None = None
    method: str | None = None
    confidence: float | None = None

    @property
    def changed(self) -> bool:
        return self.new != self.old


@dataclass(frozen=True, slots=True)
class ThresholdUpdate:
    """Thresholds to put in force and the per-border changes that explain them."""

    thresholds: Thresholds
    changes: tuple[ThresholdChange, ...]


def _check_counts(errors: float, n: float, confidence: float) -> None:
    if not 0 <= errors <= n:
        raise ValueError(f"need 0 <= errors <= n, got errors={errors}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def upper_error_bound(errors: float, n: float, confidence: float = 0.95, method: Method = "clopper-pearson") -> float:
    """One-sided upper confidence bound of an error rate; 1.0 when n == 0 (nothing is known).

    Counts may be fractional (weighted effective counts).
    """
    _check_counts(errors, n, confidence)
    if n == 0 or errors == n:
        return 1.0
    if method == "clopper-pearson":
        # beta.ppf(q, a, b) is betaincinv(a, b, q); called directly it skips scipy.stats' ~1 ms of argument
        # checking, which dominated relearning (100+ bounds per relearn, one relearn every 25 verifications).
        return float(betaincinv(errors + 1, n - errors, confidence))
    if method == "wilson":
        return _wilson(errors, n, float(norm.ppf(confidence)))
    raise ValueError(f"method must be 'clopper-pearson' or 'wilson', got {method!r}")


def lower_error_bound(errors: float, n: float, confidence: float = 0.95, method: Method = "clopper-pearson") -> float:
    """One-sided lower confidence bound of an error rate; 0.0 when there are no errors."""
    _check_counts(errors, n, confidence)
    if n == 0 or errors == 0:
        return 0.0
    if method == "clopper-pearson":
        return float(betaincinv(errors, n - errors + 1, 1.0 - confidence))
    if method == "wilson":
        return _wilson(errors, n, -float(norm.ppf(confidence)))
    raise ValueError(f"method must be 'clopper-pearson' or 'wilson', got {method!r}")


def _wilson(errors: float, n: float, z: float) -> float:
    p = errors / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(min(1.0, max(0.0, (centre + spread) / (1 + z * z / n))))


class _Evidence:
    """Observations as arrays, so a grid of candidate regions is cheap to evaluate."""

    def __init__(self, evidence: Iterable[Observation]) -> None:
        obs = list(evidence)
        self.conf = np.array([o.confidence for o in obs], dtype=float)
        self.wrong = np.array([not o.correct for o in obs], dtype=bool)
        self.weight = np.array([o.weight for o in obs], dtype=float)

    def stats(self, mask: np.ndarray) -> tuple[int, int, float, float]:
        """Raw n and errors, then the Kish-effective n and errors used for the bound."""
        n, errors = int(mask.sum()), int((mask & self.wrong).sum())
        if n == 0:
            return 0, 0, 0.0, 0.0
        w = self.weight[mask]
        n_eff = float(w.sum() ** 2 / (w * w).sum())
        p_hat = float(w[self.wrong[mask]].sum() / w.sum())
        return n, errors, n_eff, p_hat * n_eff


@dataclass(frozen=True, slots=True)
class _Tested:
    threshold: float
    n: int
    errors: int
    upper: float
    lower: float


def _reachable(
    ev: _Evidence, current: float, candidates: Sequence[float], region: Callable[[float], np.ndarray]
) -> list[float]:
    """Candidates at or above current, plus those below it reachable without crossing an unverified cell.

    Never extrapolate: 300 clean checks at 0.97 must not open the border down to 0.50 for a range of
    confidence no human has looked at, even if one stray item far below was verified.
    """
    ordered = sorted(set(candidates))
    reachable = [t for t in ordered if t >= current]
    upper = current
    for t in reversed([t for t in ordered if t < current]):
        if current >= AUTO_OFF and not np.any(region(t)):
            # Auto-accept off: every pre-label is reviewed, so an empty cell above all the evidence holds no
            # item at all, not an unverified one. Skip it; else a model that never says > 0.99 stays off forever.
            upper = t
            continue
        if not np.any(region(t) & ~region(upper)):
            break
        reachable.append(t)
        upper = t
    return sorted(reachable)


def _learn(
    border: Border,
    ev: _Evidence,
    current: float,
    region: Callable[[float], np.ndarray],
    candidates: Sequence[float],
    refuted_to: float,
    target: float,
    confidence: float,
    method: Method,
    min_evidence: int,
    step_up: bool = False,
    band: Callable[[float], np.ndarray] | None = None,
    band_target: float | None = None,
) -> ThresholdChange:
    if not 0.0 < target < 1.0:
        raise ValueError(f"target error must be in (0, 1), got {target}")
    if band_target is not None and not 0.0 < band_target < 1.0:
        raise ValueError(f"border error must be in (0, 1), got {band_target}")

    def bounds(mask: np.ndarray) -> _Tested:
        n, errors, n_eff, x_eff = ev.stats(mask)
        upper = upper_error_bound(x_eff, n_eff, confidence, method)
        return _Tested(0.0, n, errors, upper, lower_error_bound(x_eff, n_eff, confidence, method))

    def test(t: float) -> _Tested:
        return replace(bounds(region(t)), threshold=t)

    def border_ok(t: float) -> bool:
        """The band just above t is shown to be under band_target (no border test: always)."""
        if band is None or band_target is None:
            return True
        b = bounds(band(t))
        return b.n >= min_evidence and b.upper < band_target

    def border_refuted(t: float) -> bool:
        if band is None or band_target is None:
            return False
        b = bounds(band(t))
        return b.n >= min_evidence and b.lower > band_target

    def change(new: float, at: _Tested, reason: str) -> ThresholdChange:
        return ThresholdChange(border, current, new, reason, at.n, at.errors, at.upper, target, method, confidence)

    pct = f"{confidence:.0%}"
    refuted = border_refuted(current)
    tested = [r for r in map(test, _reachable(ev, current, candidates, region)) if r.n >= min_evidence]
    passing = [r for r in tested if r.upper < target]
    if band is not None and band_target is not None:
        # Below the current border, every step down must also keep the band above it under band_target: the
        # border stops at the first band that is not shown to be, instead of jumping past it.
        # A current border whose band is shown to be over band_target is no longer kept (see refutation below).
        ok = {r.threshold: border_ok(r.threshold) for r in passing}
        keep_current = not refuted
        below = sorted((r for r in passing if r.threshold < current), key=lambda r: -r.threshold)
        stop = current if not keep_current else next((r.threshold for r in below if not ok[r.threshold]), None)
        passing = [r for r in passing
                   if (r.threshold > current and ok[r.threshold]) or (r.threshold == current and keep_current)
                   or (r.threshold < current and (stop is None or r.threshold > stop))]
    if passing:
        best = passing[0]
        return change(
            best.threshold,
            best,
            f"lowest threshold whose one-sided {pct} {method} upper bound of the pre-label error rate is under "
            f"target: {best.errors}/{best.n} wrong, bound {best.upper:.4f} < {target}",
        )
    now = test(current)
    if refuted and not (now.n >= min_evidence and now.lower > target):
        b = bounds(band(current))  # type: ignore[misc]
        now = replace(now, n=b.n, errors=b.errors, lower=b.lower, upper=b.upper)
        target = band_target  # type: ignore[assignment]  # what the evidence refutes, for the reason below
    if (now.n >= min_evidence and now.lower > target) or refuted:
        above = [r for r in tested if r.threshold > current and r.lower <= target
                 and not border_refuted(r.threshold)] if step_up else []
        if above:
            up = above[0]
            return change(
                up.threshold,
                up,
                f"evidence shows the error at {current} exceeds target ({now.errors}/{now.n} wrong, one-sided {pct} "
                f"lower bound {now.lower:.4f} > {target}); stepped up to the lowest threshold the evidence does not "
                f"refute: {up.errors}/{up.n} wrong, lower bound {up.lower:.4f}",
            )
        return change(
            refuted_to,
            now,
            f"evidence shows the error at the current threshold exceeds target: {now.errors}/{now.n} wrong, "
            f"one-sided {pct} lower bound {now.lower:.4f} > {target}; border moved to {refuted_to} until evidence "
            f"supports a lower one",
        )
    if not tested:
        return change(
            current,
            now,
            f"evidence too thin: no reachable candidate has {min_evidence} verified items in its region yet; "
            f"keeping {current}",
        )
    return change(
        current,
        now,
        f"no candidate's upper bound is under {target} yet and the current threshold is not shown to exceed it "
        f"({now.errors}/{now.n} wrong, bound {now.upper:.4f}); keeping {current}",
    )


def learn_auto_threshold(
    evidence: Iterable[Observation],
    current: float = SEED_AUTO_ACCEPT,
    *,
    target_error: float = DEFAULT_TARGET_AUTO_ERROR,
    confidence: float = 0.95,
    method: Method = "clopper-pearson",
    min_evidence: int = DEFAULT_MIN_EVIDENCE,
    floor: float = DEFAULT_FLOOR,
    candidate_grid: Sequence[float] = DEFAULT_GRID,
    step_up_when_refuted: bool = False,
    border_error: float | None = None,
    border_band: float = DEFAULT_BORDER_BAND,
) -> ThresholdChange:
    """Lowest auto-accept border whose auto-label error (items with confidence > t) is provably under target.

    Kept when evidence is thin or inconclusive; switched off (1.0) when the evidence shows the current
    border's error is above target, or, with step_up_when_refuted, raised to the lowest candidate whose
    region the evidence does not refute (off only when there is none). Never learned below floor.
    border_error: also the band (t, t + border_band] must be provably under it before the border moves down
    to t, and a border whose band is shown above it is refuted like one whose region is (DEFAULT_BORDER_BAND).
    """
    if not border_band > 0.0:
        raise ValueError(f"border_band must be > 0, got {border_band}")
    ev = _Evidence(evidence)
    candidates = [t for t in (*candidate_grid, current) if floor <= t < 1.0]
    return _learn(
        Border.AUTO_ACCEPT,
        ev,
        current,
        lambda t: ev.conf > t,
        candidates,
        AUTO_OFF,
        target_error,
        confidence,
        method,
        min_evidence,
        step_up_when_refuted,
        band=lambda t: (ev.conf > t) & (ev.conf <= t + border_band),
        band_target=border_error,
    )


def learn_single_threshold(
    evidence: Iterable[Observation],
    current: float = SEED_SINGLE_REVIEW,
    auto_accept: float = SEED_AUTO_ACCEPT,
    *,
    target_error: float = DEFAULT_TARGET_SINGLE_ERROR,
    confidence: float = 0.95,
    method: Method = "clopper-pearson",
    min_evidence: int = DEFAULT_MIN_EVIDENCE,
    floor: float = DEFAULT_FLOOR,
    candidate_grid: Sequence[float] = DEFAULT_GRID,
) -> ThresholdChange:
    """Lowest single-review border t whose band [t, auto_accept] has pre-label error provably under target.

    The band, not everything above t: auto-accepted items never meet a single reviewer, and their
    near-zero error would hide how wrong the drafts a reviewer actually sees are. Below the border a
    pre-label is too often wrong for one anchored reviewer to catch, so k annotators vote instead.
    The result never exceeds auto_accept; refuted evidence moves it up to auto_accept (single tier off).
    """
    ev = _Evidence(evidence)
    current = min(current, auto_accept)
    candidates = [t for t in (*candidate_grid, current) if floor <= t <= auto_accept]
    return _learn(
        Border.SINGLE_REVIEW,
        ev,
        current,
        lambda t: (ev.conf >= t) & (ev.conf <= auto_accept),
        candidates,
        auto_accept,
        target_error,
        confidence,
        method,
        min_evidence,
    )


def learn_thresholds(
    evidence: Iterable[Observation],
    current: Thresholds,
    *,
    target_auto_error: float = DEFAULT_TARGET_AUTO_ERROR,
    target_single_error: float = DEFAULT_TARGET_SINGLE_ERROR,
    confidence: float = 0.95,
    method: Method = "clopper-pearson",
    min_evidence: int = DEFAULT_MIN_EVIDENCE,
    floor: float = DEFAULT_FLOOR,
    candidate_grid: Sequence[float] = DEFAULT_GRID,
    step_up_when_refuted: bool = False,
    single_floor: float | None = None,
    auto_border_error: float | None = None,
) -> ThresholdUpdate:
    """Learn both borders in the only valid order: auto first, then the single band below the new auto border.

    floor bounds the auto border; single_floor (default: floor) the single-review border; auto_border_error
    the error of the pre-labels just above the auto border (learn_auto_threshold's border_error).
    """
    obs = list(evidence)
    common = dict(confidence=confidence, method=method, min_evidence=min_evidence, candidate_grid=candidate_grid)
    # Only the auto border steps up: a refuted single band already falls back to the auto border (single off).
    auto = learn_auto_threshold(obs, current.auto_accept, target_error=target_auto_error,
                                step_up_when_refuted=step_up_when_refuted, floor=floor,
                                border_error=auto_border_error, **common)
    single = learn_single_threshold(obs, current.single_review, auto.new, target_error=target_single_error,
                                    floor=floor if single_floor is None else single_floor, **common)
    # learn_single_threshold saw the single border already clipped to the new auto border; report the real old one.
    single = replace(single, old=current.single_review)
    return ThresholdUpdate(Thresholds(auto_accept=auto.new, single_review=single.new), (auto, single))


def starting_thresholds(
    recommended: Thresholds, single_start: float | None = None, *, in_force: Thresholds = NO_EVIDENCE
) -> Thresholds:
    """The borders a project takes from a trainer's recommendation: its single border no higher than single_start
    (nor than the auto border), its auto border the one in force (NO_EVIDENCE for a new project: auto-accept off).

    The auto border moves only on the router's own verified pre-labels (learn_auto_threshold, down where they show
    its region under target, up where they refute it) and on qc's model flags (conservative_shift). A
    recommendation is no such evidence: a first model's held-out set is 10% of the bootstrap, a few dozen items,
    and past calibration_min_holdout it is also the set the model's temperature was fitted on, so a bound computed
    on it is in-sample, and worst where a taxonomy has only a few labels per class (the live BANKING77 demo
    auto-accepted 29% of its items at 2.9% error, against a 2% target, on the seed's 0.95 the trainer passed
    on). Nor may a recommendation raise it: the trainer's 1.0 means its held-out set is too small to show
    anything (recommend_thresholds), and taking it would switch off, at every retrain with
    adopt_every_recommendation, an auto border the router's evidence had opened.

    The trainer recommends from its first model's held-out items, a hundred or so, too few to move the single
    border from the seed's 0.70; the router's learner then needs ~500 items of its own evidence to take it down
    to its floor, and until then every item under 0.70 is labelled by a consensus of several annotators (3+
    labels each, ~1.3 labels per item over a project's first 500 items: bench/quality.py). Where qc weighs a
    lone reviewer against the model and sends a doubtful label to an expert (qc's review_with_model), a single
    review is the cheaper check down to the router's single floor from the start; evidence that the band is
    worse than its target still moves the border up (learn_single_threshold). None: the recommendation's as is.
    """
    if single_start is not None and not 0.0 <= single_start <= 1.0:
        raise ValueError(f"single_start must be in [0, 1], got {single_start}")
    auto = in_force.auto_accept
    single = min(recommended.single_review, auto)
    if single_start is not None and single_start < single:
        single = single_start
    return Thresholds(auto_accept=auto, single_review=single)


def conservative_shift(
    thresholds: Thresholds, amount: float = DEFAULT_CONSERVATIVE_SHIFT, reason: str = "qc flagged the model as bad"
) -> ThresholdUpdate:
    """Raise both borders by amount (capped at 1.0, single never above auto) when the model is distrusted."""
    if not 0.0 < amount <= 1.0:
        raise ValueError(f"amount must be in (0, 1], got {amount}")
    # Rounded so 0.90 + 0.05 is stored and compared as 0.95, not 0.9500000000000001.
    auto = min(1.0, round(thresholds.auto_accept + amount, 6))
    single = min(auto, round(thresholds.single_review + amount, 6))
    why = f"{reason}: borders raised by {amount}"
    return ThresholdUpdate(
        Thresholds(auto_accept=auto, single_review=single),
        (
            ThresholdChange(Border.AUTO_ACCEPT, thresholds.auto_accept, auto, why),
            ThresholdChange(Border.SINGLE_REVIEW, thresholds.single_review, single, why),
        ),
    )
