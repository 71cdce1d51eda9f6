"""Trainer settings (LABELMESH_TRAINER_*)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from labelmesh.runtime.settings import CommonSettings
from services.trainer.domain.evaluation import DEFAULT_PROMOTION_ALPHA


class TrainerSettings(CommonSettings):
    """The trainer is a singleton: one process (Kubernetes: 1 replica, `Recreate` rollout), unlike every other
    service, which is a consumer group of equal replicas (DESIGN.md, "Replicas and ownership").

    A second trainer (a mis-rollout, a manual `labelmesh run trainer` beside the pod) corrupts nothing but
    wastes and confuses: both read the same examples (its consumer group splits the partitions, yet each
    trains on the whole database), both train the same project at once, each compares its challenger with
    the champion it read, so both may promote; `train_state.trained_on` is last-writer-wins, so retraining is
    triggered too early or late; timed retrains run twice. What stays correct by construction: a model
    version is taken by inserting `project/version` (unique `_id`, services/trainer/registry.py), so no
    version is published twice, and the champion only moves forward (`$max`).
    """

    model_config = SettingsConfigDict(env_prefix="LABELMESH_TRAINER_", extra="ignore")

    # The first model needs this many labelled examples; later ones retrain every `retrain_every` new labels.
    first_model_min: int = 200
    retrain_every: int = 500
    # ...or after this many seconds if anything new arrived (0 = off).
    retrain_interval_s: float = 0.0
    holdout_fraction: float = 0.10
    # With at least this many held-out labels the temperature is fitted on them, else by cross-validation.
    calibration_min_holdout: int = 300
    # A retrain starts from the champion's weights (labelmesh.ml.head.train_head, warm_start): at 10,000
    # BANKING77 labels lbfgs takes 29 iterations instead of 68-70, at the same test accuracy and ECE
    # (bench/results/retrain_time.json).
    warm_start: bool = True
    # BLAS threads for the fit. The trainer shares its cores with the other services (and the demo with all
    # of them): there, OpenBLAS's two threads spin against each other's load. The fit's products at 9,000
    # rows took 0.35 s wall (0.15 CPU-s) per iteration with 2 threads at load 11 on 2 cores, 0.058 s
    # (0.031 CPU-s) with 1 (2026-12-07). A cold fit at 10,000 labels: 1.7-1.8 s with 1 thread, 4.4-16.7 s
    # with 2 at load 0.4-1.1 (bench/results/retrain_time.json); medians 3.9 s vs 37 s at load 13-16
    # (retrain_time-load14.json). Raise it where the trainer has cores of its own.
    fit_threads: int = 1
    # Held-out auto labels (the previous model's unchecked predictions) neither judge nor calibrate a new model
    # (evaluation.judges_models). Retrained on its own labels in the quality benchmark, keeping them made models
    # overconfident: 97.7% final accuracy at 0.40 labels/item, vs 98.2% at 0.43 without them (bench/quality.py,
    # online point at target 0.05, 90% annotators).
    heldout_excludes_auto: bool = True
    # A challenger is promoted unless a paired test on the held-out items shows it worse than the champion at
    # this one-sided level (evaluation.decide_promotion).
    promotion_alpha: float = DEFAULT_PROMOTION_ALPHA
    min_eval_items: int = 30
    # A training check that failed (e.g. the database was away) is tried again after this long.
    retry_delay_s: float = 5.0
    http_port: int = 9104
