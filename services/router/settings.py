"""Router settings (LABELMESH_ROUTER_*)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from labelmesh.runtime.settings import CommonSettings
from services.router.domain.evidence import DEFAULT_RELEARN_EVERY
from services.router.domain.spot_check import DEFAULT_EVIDENCE_DRAW_RATE, DEFAULT_SPOT_CHECK_RATE
from services.router.domain.thresholds import DEFAULT_CONSERVATIVE_SHIFT, DEFAULT_MIN_EVIDENCE, DEFAULT_SINGLE_FLOOR
from services.router.domain.tiers import DEFAULT_EXPERT_MARGIN, DEFAULT_OOD_SIMILARITY_FLOOR

SERVICE = "router"


class RouterSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="LABELMESH_ROUTER_", extra="ignore")

    # Each default below that a domain rule also has is that rule's constant (spot_check.DEFAULT_SPOT_CHECK_RATE
    # explains 5%, RoutingPolicy the margin and the floor), so the two cannot drift apart.
    spot_check_rate: float = DEFAULT_SPOT_CHECK_RATE
    # While auto-accept is off, this share of the reviews above the lowest possible auto border go first
    # (spot_check.DEFAULT_EVIDENCE_DRAW_RATE explains why). 0 turns it off.
    evidence_draw_rate: float = DEFAULT_EVIDENCE_DRAW_RATE
    expert_margin: float = DEFAULT_EXPERT_MARGIN
    ood_similarity_floor: float = DEFAULT_OOD_SIMILARITY_FLOOR
    neighbours: int = 5
    # Thresholds are re-learned after this many new verified observations in a project.
    relearn_every: int = DEFAULT_RELEARN_EVERY
    # Pre-label error the single band may have. With qc's confirm_single and review_with_model (its defaults),
    # a reviewer who overrides a draft unconvincingly is checked by an expert, so a wrong draft costs an expert
    # label rather than a wrong final label: the band may reach down to where drafts are right half the time.
    # Set 0.20 (band error ~ what one anchored reviewer catches) if qc's confirm_single is off.
    target_single_error: float = 0.50
    # Lowest single-review border the learner may reach (thresholds.DEFAULT_SINGLE_FLOOR explains 0.15).
    single_floor: float = DEFAULT_SINGLE_FLOOR
    min_evidence: int = DEFAULT_MIN_EVIDENCE
    # A project's single border starts no higher than this (thresholds.starting_thresholds; None: the trainer's
    # recommendation as is). Assumes qc's review_with_model, like target_single_error 0.50.
    single_start: float | None = DEFAULT_SINGLE_FLOOR
    # The auto border's own pre-label error: the band just above it (thresholds.DEFAULT_BORDER_BAND wide) must be
    # shown under this before the border moves down, and a border whose band is shown above it steps up
    # (thresholds.DEFAULT_BORDER_BAND explains why the region's average alone overshoots). None: off.
    # bench/quality.py, 90% annotators, seeds 0-2 x targets 0.04/0.05/0.08 (side runs): off, final accuracy
    # ranged 96.3-98.9% with the target (mean 97.80% at 0.428 labels/item); 0.15: 98.1-98.9% (mean 98.40% at
    # 0.477); 0.10: 98.4-98.7% (mean 98.48% at 0.485); 0.12 with the single floor at 0.15: mean 98.39% at 0.460,
    # 0.15 with it: 98.33% at 0.449, of these the only one meeting 98% at <= 0.45 on all three seeds (target 0.08).
    auto_border_error: float | None = 0.15
    conservative_shift: float = DEFAULT_CONSERVATIVE_SHIFT
    # A refuted auto-accept border rises to the lowest value the evidence does not refute, instead of
    # switching auto-labelling off until the next model (bench/results/quality.json).
    step_up_when_refuted: bool = True
    # Take the trainer's recommended thresholds at every new model (else only for a project's first).
    adopt_every_recommendation: bool = False
    # Re-score with each project's champion (champion.py): queued items it auto-accepts are promoted when it
    # arrives or the auto border moves, and verified items are evidence at its confidence. False: every item
    # keeps the confidence of the model that pre-labelled it (bench/live_quality.py compares the two).
    rescore_with_champion: bool = True
    http_port: int = 9102
