"""Router settings (LABELMESH_ROUTER_*)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from labelmesh.runtime.settings import CommonSettings


class RouterSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="LABELMESH_ROUTER_", extra="ignore")

    spot_check_rate: float = 0.08
    expert_margin: float = 0.05
    ood_similarity_floor: float = 0.30
    neighbours: int = 5
    # Thresholds are re-learned after this many new verified observations in a project.
    relearn_every: int = 25
    target_single_error: float = 0.20
    min_evidence: int = 50
    conservative_shift: float = 0.02
    # A refuted auto-accept border rises to the lowest value the evidence does not refute, instead of
    # switching auto-labelling off until the next model (bench/results/quality.json).
    step_up_when_refuted: bool = True
    # Take the trainer's recommended thresholds at every new model (else only for a project's first).
    adopt_every_recommendation: bool = False
    http_port: int = 9102
