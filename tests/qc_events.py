"""qc's test events, shared by the qc, replica and crash-window tests: a 4-label project, embeddings by label."""

from __future__ import annotations

import numpy as np

from schemas.events import (
    ItemIngested,
    ItemPrelabeled,
    ItemRouted,
    LabelScore,
    LabelSubmitted,
    ProjectConfigured,
    TextPayload,
    Thresholds,
    Tier,
)

LABELS = ("a", "b", "c", "d")
DIM = 16
CENTRES = {label: np.random.default_rng(100 + i).normal(size=DIM) * 3 for i, label in enumerate(LABELS)}


def vec(label: str, seed: int) -> tuple[float, ...]:
    v = CENTRES[label] + np.random.default_rng(seed).normal(size=DIM) * 0.5
    return tuple(float(x) for x in v)


def config(project: str) -> ProjectConfigured:
    return ProjectConfigured(producer="test", project=project, labels=LABELS, guideline_version=1)


def ingest(project: str, item: str, **labels: str) -> ItemIngested:
    return ItemIngested(producer="test", project=project, item_id=item, payload=TextPayload(text=item), **labels)


def pre(project: str, item: str, truth: str, seed: int, top: str | None = None) -> ItemPrelabeled:
    return ItemPrelabeled(producer="test", project=project, item_id=item, model_version=1, encoder="test-16",
                          top_k=(LabelScore(label=top or truth, probability=0.6),), embedding=vec(truth, seed))


def route(project: str, item: str, tier: Tier, required: int, top: str = "a") -> ItemRouted:
    return ItemRouted(producer="test", project=project, item_id=item, tier=tier, required_annotators=required,
                      model_version=1, top_k=(LabelScore(label=top, probability=0.6),), thresholds=Thresholds())


def label(project: str, item: str, annotator: str, label: str, *, role: str = "annotator", golden: bool = False,
           ms: int = 8000) -> LabelSubmitted:
    return LabelSubmitted(producer="test", project=project, item_id=item, task_id=f"t-{item}-{annotator}",
                          annotator_id=annotator, role=role, label=label, time_spent_ms=ms, guideline_version=1,
                          idempotency_key=f"{item}-{annotator}", golden=golden)
