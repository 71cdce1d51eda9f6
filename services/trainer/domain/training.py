"""A training run's rules: when one is due, what it trains and calibrates on, how the head is fitted, what is recorded
and announced."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from labelmesh.ml.head import TrainedHead, train_head
from schemas.events import ArtifactRef, ModelUpdated, Thresholds, derived_id
from services.router.domain.tiers import Thresholds as Borders
from services.trainer.domain.evaluation import Evaluation, judges_models
from services.trainer.domain.lineage import training_set_version


def retrain_due(*, available: int, trained_on: int, has_champion: bool, first_model_min: int, retrain_every: int,
                by_time: bool = False) -> bool:
    """A first model once `first_model_min` labels are usable; then every `retrain_every` new ones, or on a timed
    check when anything new arrived."""
    fresh = available - trained_on
    return ((not has_champion and available >= first_model_min)
            or (has_champion and fresh >= retrain_every)
            or (by_time and has_champion and fresh > 0))


def _stack(docs: Sequence[Mapping[str, Any]]) -> np.ndarray:
    return np.stack([np.frombuffer(d["embedding"], np.float32) for d in docs])


@dataclass(frozen=True)
class TrainingData:
    X: np.ndarray
    y: list[str]
    encoder: str
    X_eval: np.ndarray
    y_eval: list[str]
    members: list[tuple[str, int, str]]  # (item, label version, label) of every training row
    guideline_versions: list[int]

    @property
    def version(self) -> str:
        return training_set_version(self.members)


def training_data(train_docs: Sequence[Mapping[str, Any]], held_out: Sequence[Mapping[str, Any]], *,
                  exclude_auto: bool) -> TrainingData:
    """Training rows from the usable examples not held out; the held-out ones that may judge a model
    (evaluation.judges_models) evaluate and may calibrate it."""
    eval_docs = [d for d in held_out if judges_models(d.get("provenance"), exclude_auto=exclude_auto)]
    X = _stack(train_docs)
    return TrainingData(
        X=X, y=[d["label"] for d in train_docs], encoder=train_docs[0]["encoder"],
        X_eval=_stack(eval_docs) if eval_docs else X[:0], y_eval=[d["label"] for d in eval_docs],
        members=[(d["item_id"], d["version"], d["label"]) for d in train_docs],
        guideline_versions=sorted({d.get("guideline_version") or 0 for d in train_docs}),
    )


def fit(data: TrainingData, classes: Sequence[str], champion: TrainedHead | None, *, calibration_min_holdout: int,
        warm_start: bool, fit_threads: int) -> TrainedHead:
    """The new head, warm-started from the champion of the same encoder, with BLAS held to `fit_threads`
    (TrainerSettings says why).

    The temperature comes from the held-out labels once there are enough of them: one fit instead of 6-21
    cross-validation fits (bench/results/retrain_time.json), and a random holdout calibrates better than
    out-of-fold logits of actively chosen training items. Small projects keep cross-validation.
    """
    on_holdout = len(data.y_eval) >= calibration_min_holdout
    start = champion if warm_start and champion is not None and champion.encoder_name == data.encoder else None
    with threadpool_limits(fit_threads):
        return train_head(data.X, data.y, data.X_eval if on_holdout else None, data.y_eval if on_holdout else None,
                          encoder_name=data.encoder, classes=classes, warm_start=start)


def run_metrics(challenger: Evaluation, champion: Evaluation | None, seconds: float, size: int) -> dict[str, float]:
    metrics = {"heldout_n": float(challenger.n), "heldout_accuracy": challenger.accuracy,
               "heldout_ece": challenger.ece, "train_seconds": seconds, "train_size": float(size)}
    if champion is not None:
        metrics["champion_heldout_accuracy"] = champion.accuracy
    return metrics


def finite(metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics that are numbers: an empty held-out set leaves NaN, which FerretDB cannot store (the connection
    drops) and JSON cannot carry."""
    return {k: v for k, v in metrics.items() if np.isfinite(v)}


def announcement(*, producer: str, project: str, version: int, encoder: str, artifact_uri: str, sha256: str,
                 size: int, training_set: str, training_set_size: int, metrics: Mapping[str, float],
                 temperature: float, thresholds: Borders) -> ModelUpdated:
    """model.updated for a registered version (the artifact's content left out; the publisher adds it). Its id
    derives from the project, version and training set, so a repeated announcement is the same event."""
    return ModelUpdated(
        event_id=derived_id(project, "model", str(version), training_set),
        producer=producer, project=project, model_version=version, encoder=encoder,
        artifact=ArtifactRef(uri=artifact_uri, sha256=sha256, size=size, content_b64=""),
        training_set_version=training_set, training_set_size=training_set_size,
        heldout_metrics=finite(metrics),
        calibration={"temperature": float(temperature)},
        recommended_thresholds=Thresholds(auto_accept=thresholds.auto_accept,
                                          single_review=thresholds.single_review),
    )
