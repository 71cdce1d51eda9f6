"""qc settings (LABELMESH_QC_*)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from labelmesh.runtime.settings import CommonSettings
from services.qc.domain.model_prior import DEFAULT_MIN_SINGLE_CONFIDENCE, DEFAULT_SHOWN_ERROR_SHARE


class QcSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="LABELMESH_QC_", extra="ignore")

    # Weighted consensus below this posterior goes to an expert.
    min_consensus_confidence: float = 0.75
    # A lone reviewer who overrides the model's label is final only after an expert agrees: a 90% reviewer
    # makes about 10% of correct model labels look wrong (bench/results/quality.json).
    confirm_single: bool = True
    # With confirm_single: weigh the lone reviewer against the pre-label's calibrated top-k (Bayes, see
    # services/qc/domain/model_prior.py) instead of escalating every override. The reviewer's label is final
    # when its posterior reaches min_single_confidence: a plausible override is kept, a confirmation of a
    # shaky pre-label is not (model_prior.DEFAULT_MIN_SINGLE_CONFIDENCE explains 0.85).
    review_with_model: bool = True
    # A lone reviewer who would be escalated to an expert gets a second ordinary reviewer first (finalize.next_step
    # explains). Off: it measured worse on both axes. Offline (bench/results/quality-second-opinion.json, seed 0,
    # all 9,443 items, target 0.02): ~90% team 98.93% at 0.906 labels/item ($0.126) against 99.09% at 0.709
    # ($0.119) without; default team 98.56% at 1.014 ($0.150) against 99.26% at 0.834 ($0.138). Live (1,500
    # items, bench/results/live_quality-minilm-1500-second-opinion.json): 96.9% at 1.50, $0.283; 486 second
    # opinions, 213 of them still went to an expert. Two ~90% reviewers who agree against a confident model are
    # wrong too often, and pairs that disagree pay for three labels.
    second_opinion: bool = False
    min_single_confidence: float = DEFAULT_MIN_SINGLE_CONFIDENCE
    # Share of a reviewer's mistakes assumed to land on a label the task showed (model_prior explains 0.9).
    shown_error_share: float = DEFAULT_SHOWN_ERROR_SHARE
    golden_accuracy_threshold: float = 0.80
    golden_min_evidence: int = 10
    # Experts' verdicts on lone reviewers (services/qc/domain/verdicts.py) suspend an annotator too: after
    # expert_agreement_min_evidence verdicts, when the one-sided 95% upper bound of the share upheld is below
    # expert_agreement_threshold. The items were escalated because they looked wrong, so the bar is far below
    # golden accuracy's: with it, 0 of 10 upheld suspends at the 10th verdict and 20% upheld by the 14th
    # (median), while a reviewer upheld 55% of the time is suspended within 200 verdicts in 1 of 300
    # simulated careers, and at 60% in none (at a 0.50 bar: 1 in 19 at 55%).
    expert_agreement_threshold: float = 0.40
    expert_agreement_min_evidence: int = 10
    # When an annotator is suspended, this many of their latest labels go back for review.
    review_recent_labels: int = 50

    # Agreement (Cohen pairwise, Fleiss, Krippendorff) and Dawid-Skene, recomputed every N labels of a project,
    # over the whole project and over tumbling time windows of this many seconds.
    agreement_every: int = 100
    agreement_window_s: int = 3600
    min_alpha: float = 0.667
    min_kappa: float = 0.60
    # Spans projects: mean span F1 between two annotators' answers to one item (exact spans, as in CoNLL) below
    # which agreement is flagged. A first setting, not a measured one: bench/spans.py's simulated team is the place
    # to set it from.
    min_span_f1: float = 0.70
    agreement_min_items: int = 20

    # Nearest-neighbour check on each human label (flag when `knn_threshold` of the k nearest carry one other label).
    knn_k: int = 10
    knn_threshold: float = 0.8
    knn_min_similarity: float = 0.5

    # Confident learning over the final labels: every N final labels of a project, and once the project is
    # large, when it has grown by label_error_growth since the last pass (each pass fits label_error_folds
    # models on every final label: at 100,000 items, a pass every 500 would refit all of them 200 times).
    label_error_every: int = 500
    label_error_growth: float = 0.25
    label_error_folds: int = 5
    label_error_max_flags: int = 50

    # Drift and fatigue per annotator, rescanned every N of their labels.
    drift_every: int = 25
    drift_alpha: float = 0.0001
    drift_baseline: int = 100
    drift_window: int = 100
    drift_step: int = 25
    quality_baseline: int = 50
    quality_window: int = 50
    quality_step: int = 10
    quality_min_drop: float = 0.20

    http_port: int = 9103
