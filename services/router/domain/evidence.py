"""Which verified pre-labels are threshold evidence, how much each weighs, and when a project relearns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from schemas.events import Thresholds, Tier
from schemas.spans import Span, answer_key
from services.router.domain.thresholds import NO_EVIDENCE

# Thresholds are relearned after this many new verified observations in a project (RouterSettings.relearn_every).
DEFAULT_RELEARN_EVERY = 25


def sample_weight(tier: str | None, spot_check_rate: float) -> float:
    """Inverse of the chance a verified pre-label was checked at all.

    Auto items are verified only when spot-checked; weighting them by 1/rate keeps the estimate unbiased.
    Every other tier is reviewed in full (weight 1), and so is an item with no stored decision.
    """
    if not 0.0 < spot_check_rate <= 1.0:
        raise ValueError(f"spot_check_rate must be in (0, 1], got {spot_check_rate}")
    return 1.0 / spot_check_rate if tier == Tier.AUTO.value else 1.0


def prelabel_correct(prelabel: str, final: str, prelabel_spans: Sequence[Span | Mapping[str, Any]] | None = None,
                     final_spans: Sequence[Span | Mapping[str, Any]] | None = None) -> bool | None:
    """Whether a verified pre-label was right: its label is the final one, or (spans items) every one of its spans
    is a final span and no final span is missing. None: a spans item whose pre-labelled spans are not known."""
    if final_spans is None:
        return prelabel == final
    if prelabel_spans is None:
        return None
    return answer_key(prelabel_spans) == answer_key(final_spans)


def provisional_verdict(prelabel: str, votes: Sequence[Sequence[str]],
                        posterior: float | None = None) -> tuple[bool, float] | None:
    """A disputed pre-label as threshold evidence until the item's final label replaces it: (correct, the share of
    one observation it counts for), or None when the flag names no votes (nothing is recorded).

    Wrong once any human voted against it, counted as the chance that they are right (qc's posterior of their
    label, given the model's top-k and their reliability; 1 when qc gave none): a 90% reviewer overriding a 0.97
    pre-label is usually the one who slipped, and counted as a whole error the open disputes of a 90% team kept
    auto-accept shut for a whole live run while the experts were busy.

    Without it the evidence came back in a biased order: a reviewer who confirms the pre-label finalises the item
    at once, one who overrides it waits for an expert, so the first verified pre-labels of a project were mostly
    the right ones. The live BANKING77 run opened the auto border at 0.81 on them, then raised it to 0.94 as the
    experts' answers arrived, and the items auto-accepted in between were wrong 2.3-4.1% of the time against a
    2% target (bench/results/live_quality-minilm-1500-promote.json).
    """
    labels = [vote[1] for vote in votes if len(vote) >= 2]
    if not labels:
        return None
    if all(label == prelabel for label in labels):
        return True, 1.0
    share = 1.0 if posterior is None else min(1.0, max(0.0, float(posterior)))
    return (False, share) if share > 0.0 else None


@dataclass(frozen=True, slots=True)
class ProjectLearning:
    """What the owner of a project's thresholds keeps between events: the borders (None until a model or the
    learner set them), the verified pre-labels recorded since the last relearn, and how far it has got."""

    thresholds: Thresholds | None = None
    unlearned: int = 0
    # The last evidence event whose effects this state holds (see unapplied).
    applied: str | None = None

    @property
    def in_force(self) -> Thresholds:
        """The borders routing uses: auto-accept off (thresholds.NO_EVIDENCE) until the project has its own."""
        return self.thresholds or NO_EVIDENCE


def record_verified(state: ProjectLearning, relearn_every: int = DEFAULT_RELEARN_EVERY) -> tuple[ProjectLearning, bool]:
    """Count one more verified pre-label; True when this one makes the project relearn (the count restarts)."""
    if relearn_every < 1:
        raise ValueError(f"relearn_every must be >= 1, got {relearn_every}")
    if state.unlearned + 1 >= relearn_every:
        return replace(state, unlearned=0), True
    return replace(state, unlearned=state.unlearned + 1), False


def adopts_recommendation(state: ProjectLearning, adopt_every: bool) -> bool:
    """The trainer's recommendation starts a project off; after that only the router's own evidence moves it
    (unless adopt_every): adopting every recommendation undid that evidence at each retrain (bench/quality.py)."""
    return adopt_every or state.thresholds is None


def unapplied(event_ids: Sequence[str], applied: str | None) -> int:
    """Where a batch of one project's evidence (in partition order) starts to be new to a stored state.

    A batch handled again after a crash holds events the stored state already counts (it is saved at each
    change, before the batch ends); counting them twice would relearn early and record a change twice.
    """
    ids = list(event_ids)
    return ids.index(applied) + 1 if applied in ids else 0
