"""qc settings (LABELMESH_QC_*)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from labelmesh.runtime.settings import CommonSettings


class QcSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="LABELMESH_QC_", extra="ignore")

    # Weighted consensus below this posterior goes to an expert.
    min_consensus_confidence: float = 0.75
    golden_accuracy_threshold: float = 0.80
    golden_min_evidence: int = 10
    http_port: int = 9103
