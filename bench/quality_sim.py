"""The offline labelling simulation behind bench/quality.py: the services' own domain code, no Kafka, Mongo, gRPC.

Items arrive one at a time and are finalised before the next one arrives (the live pipeline
overlaps them; here nothing is in flight, so every decision sees every earlier final label).
Which code is shared with the live services, and which stand-ins replace the shell around it:

- prelabeler: a TrainedHead (labelmesh.ml.head) gives each item its calibrated top-5, as the
  prelabeler does; the model in force changes only when the trainer below promotes one.
- router: services.router.domain.tiers.decide_tier on that top-5 and the item's nearest-labelled
  similarity (max cosine to bootstrap, golden and earlier items, as labelmesh.neighbours gives the
  router), spot checks drawn by spot_check.is_spot_checked, thresholds re-learned by
  thresholds.learn_thresholds every `relearn_every` verified observations (weight 1/rate for spot
  checks), starting with auto-accept off (thresholds.NO_EVIDENCE) and the first model's recommended single
  border, no higher than the router's single_start (thresholds.starting_thresholds, which never lets a
  recommendation lower the auto border; later recommendations only with the router's
  adopt_every_recommendation), the auto border also held to auto_border_error in the band just above it:
  services/router/app.py's rules. The trainer's promotion is its paired test (evaluation.decide_promotion).
  One deviation: a spot check that qc escalates keeps its 1/rate weight here; the live router looks up
  the item's latest decision, which the re-route replaced, and weighs it 1 (only matters with
  confirm_single, which escalates spot checks that overrule the auto label).
- gateway: annotators pull tasks; golden tasks are injected by gateway.domain.golden.should_inject_golden at
  golden_rate_for's rate (full for an annotator's first tasks, then settled) and chosen by choose_golden,
  suspended annotators get no work. Stand-ins: the annotator who takes a
  task is drawn at random (weighted by speed) among the active ones of the right role, and experts
  only take expert tasks (the live queue lets an idle expert take ordinary tasks too).
- qc: services.qc.finalize.next_step decides every final label, with consensus.decide as the
  weighted consensus, ReviewPolicy (model_prior.label_posterior over the item's top-k) for lone
  reviewers, and golden.smoothed_accuracy of each annotator's golden record as reliability (the live
  qc also blends in a Dawid-Skene estimate once an annotator has 20+ multiply-labelled items);
  knn_check.knn_check runs on every single-review and consensus label against the item's 10 nearest
  labelled items (bootstrap, golden, earlier finals: qc's index), and a flagged label goes to an expert;
  golden.golden_accuracy / should_flag suspend annotators, on golden answers and on experts' verdicts on
  lone reviewers (verdicts.lone_reviewer_verdict, qc's expert_agreement_* settings; the live qc also sends a
  suspended annotator's latest labels back to an expert, which is not simulated); an Escalate is re-routed
  to an expert (decide_tier with unresolved_disagreement), as the router does on qc.flagged.
- trainer: services.trainer.domain.lineage.in_holdout picks the held-out items, evaluation.evaluate /
  decide_promotion / recommend_thresholds judge each new model on them. Model versions come from a
  ModelSource: `oracle_schedule` trains on the true labels of everything seen so far (one schedule
  shared by every policy, so a sweep costs one set of fits), `OnlineTrainer` on the run's own final
  labels, as the live trainer does.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from functools import partial
from typing import Any, Protocol

import numpy as np

from labelmesh.ml.head import TrainedHead, train_head
from labelmesh.simulation import SimulatedAnnotator
from schemas.events import ProjectConfigured, Provenance
from schemas.events import Tier as EventTier
from services.qc.domain.consensus import decide as weighted_consensus
from services.qc.domain.final_label import human_cost
from services.qc.domain.golden import golden_accuracy, should_flag, smoothed_accuracy
from services.qc.domain.knn_check import knn_check
from services.gateway.domain.golden import choose_golden, golden_rate_for, should_inject_golden
from services.gateway.settings import GatewaySettings
from services.qc.domain.verdicts import Verdict, lone_reviewer_verdict
from services.qc.finalize import Escalate, Final, ItemState, ReviewPolicy, SecondOpinion, Vote, next_step
from services.qc.settings import QcSettings
from services.router.domain.spot_check import is_spot_checked
from services.router.domain.thresholds import NO_EVIDENCE, Observation, learn_thresholds, starting_thresholds
from services.router.domain.tiers import (
    Prelabel,
    RoutingPolicy,
    Thresholds,
    Tier,
    decide_tier,
)
from services.router.settings import RouterSettings
from services.trainer.domain.evaluation import decide_promotion, evaluate, recommend_thresholds
from services.trainer.domain.lineage import in_holdout
from services.trainer.settings import TrainerSettings

PROJECT = "banking77"
TOP_K = 5  # the prelabeler's default top_k
HOLDOUT_FRACTION = 0.10  # the trainer's default


@dataclass(frozen=True)
class Stream:
    """What a run labels, in arrival order, plus what only the simulation knows: the true labels."""

    labels: tuple[str, ...]
    ids: list[str]
    X: np.ndarray
    truth: list[str]
    boot_ids: list[str]
    boot_X: np.ndarray
    boot_y: list[str]
    golden_ids: list[str]
    golden_X: np.ndarray
    golden_y: list[str]

    def __len__(self) -> int:
        return len(self.ids)


def nearest_labelled_similarity(stream: Stream, block: int = 1024) -> np.ndarray:
    """Per stream item, the max cosine similarity to bootstrap, golden and earlier stream items."""
    known = np.vstack([stream.boot_X, stream.golden_X]).astype(np.float32)
    X = np.asarray(stream.X, dtype=np.float32)
    out = np.full(len(X), -1.0, dtype=np.float64)
    if len(known):
        for start in range(0, len(X), block):
            out[start:start + block] = (X[start:start + block] @ known.T).max(axis=1)
    for start in range(0, len(X), block):
        stop = min(len(X), start + block)
        sims = X[start:stop] @ X[:stop].T
        sims[np.arange(stop - start)[:, None] <= np.arange(stop)[None, :] - start] = -np.inf  # only earlier items
        out[start:stop] = np.maximum(out[start:stop], sims.max(axis=1))
    return np.clip(out, -1.0, 1.0)


@dataclass(frozen=True)
class Neighbours:
    """Per stream item, its k most similar bootstrap, golden and earlier stream items: what qc's kNN index holds.

    Rows index the stacked bootstrap, golden and stream embeddings (-1 where fewer than k exist); which items
    they are does not depend on the policy, only their final labels do, so one computation serves every run.
    """

    rows: np.ndarray
    similarities: np.ndarray
    X: np.ndarray  # the stacked embeddings the rows point into


def labelled_neighbours(stream: Stream, k: int, block: int = 512) -> Neighbours:
    known = np.vstack([stream.boot_X, stream.golden_X, stream.X]).astype(np.float32)
    offset = len(stream.boot_ids) + len(stream.golden_ids)
    X = np.asarray(stream.X, dtype=np.float32)
    rows = np.full((len(X), k), -1, dtype=np.int64)
    sims = np.full((len(X), k), -np.inf, dtype=np.float32)
    for start in range(0, len(X), block):
        stop = min(len(X), start + block)
        S = X[start:stop] @ known[:offset + stop].T
        S[np.arange(offset + stop)[None, :] >= offset + np.arange(start, stop)[:, None]] = -np.inf  # earlier only
        kk = min(k, S.shape[1])
        top = np.argpartition(-S, kk - 1, axis=1)[:, :kk]
        top_s = np.take_along_axis(S, top, axis=1)
        order = np.argsort(-top_s, axis=1, kind="stable")
        rows[start:stop, :kk] = np.take_along_axis(top, order, axis=1)
        sims[start:stop, :kk] = np.take_along_axis(top_s, order, axis=1)
    rows[~np.isfinite(sims)] = -1
    return Neighbours(rows, sims, known)


@dataclass
class ModelVersion:
    """One trained head and its top-5 for every stream and golden item (computed once, used by any policy)."""

    version: int
    start: int
    head: TrainedHead
    train_size: int
    topk_idx: np.ndarray = field(repr=False)
    topk_p: np.ndarray = field(repr=False)
    golden_idx: np.ndarray = field(repr=False)
    golden_p: np.ndarray = field(repr=False)

    @classmethod
    def of(cls, version: int, start: int, head: TrainedHead, train_size: int, stream: Stream) -> ModelVersion:
        def top(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            if len(X) == 0:
                return np.zeros((0, TOP_K), np.int64), np.zeros((0, TOP_K))
            probs = head.predict_proba(X)
            idx = np.argsort(-probs, axis=1, kind="stable")[:, :TOP_K]
            return idx, np.take_along_axis(probs, idx, axis=1)

        si, sp = top(stream.X)
        gi, gp = top(stream.golden_X)
        return cls(version, start, head, train_size, si, sp, gi, gp)

    def top_k(self, i: int, golden: bool = False) -> list[tuple[str, float]]:
        idx, p = (self.golden_idx, self.golden_p) if golden else (self.topk_idx, self.topk_p)
        return [(self.head.classes[j], float(min(1.0, q))) for j, q in zip(idx[i], p[i]) if q > 0]


class ModelSource(Protocol):
    def due(self, position: int, finals: dict[str, str]) -> ModelVersion | None:
        """The model trained when `position` stream items have final labels (finals: item id -> label), if any."""


def _trainer_split(ids: Sequence[str], fraction: float) -> np.ndarray:
    return np.array([in_holdout(PROJECT, i, fraction) for i in ids], dtype=bool)


def fit(X: np.ndarray, y: Sequence[str], X_cal: np.ndarray, y_cal: Sequence[str], labels: Sequence[str],
        seed: int) -> TrainedHead:
    """train_head as the trainer calls it, except that the trainer's held-out items calibrate instead of CV.

    Cross-validated calibration costs 6-21 fits per model, which 2 shared cores cannot afford ~19 times
    per schedule; the held-out items (bootstrap and stream items in_holdout, plus the golden set; never
    trained on, like CV's folds) cost none. train_head documents this as its alternative. Under 50
    held-out items the default CV calibration is kept.
    """
    if len(y_cal) >= 50:
        return train_head(X, y, X_cal, y_cal, encoder_name="bench", classes=labels, seed=seed)
    return train_head(X, y, encoder_name="bench", classes=labels, seed=seed)


class OracleSchedule:
    """Models retrained every `every` items on the TRUE labels of everything seen so far (non-held-out).

    Independent of the policy, so one schedule serves a whole sweep. Optimistic by the label noise the
    real trainer would see (final labels are ~2-5% wrong); OnlineTrainer measures that difference.
    """

    def __init__(self, versions: list[ModelVersion]) -> None:
        self.by_start = {v.start: v for v in versions}

    @classmethod
    def build(cls, stream: Stream, every: int, *, seed: int = 0,
              fit_fn: Callable[..., TrainedHead] = fit,
              on_version: Callable[[int, int], None] | None = None) -> OracleSchedule:
        hold_boot = _trainer_split(stream.boot_ids, HOLDOUT_FRACTION)
        hold_stream = _trainer_split(stream.ids, HOLDOUT_FRACTION)
        versions = []
        for number, start in enumerate(range(0, len(stream), every), start=1):
            train = ~hold_stream[:start]
            X = np.vstack([stream.boot_X[~hold_boot], stream.X[:start][train]])
            y = [l for l, h in zip(stream.boot_y, hold_boot) if not h] + [
                l for l, t in zip(stream.truth[:start], train) if t]
            X_cal = np.vstack([stream.boot_X[hold_boot], stream.golden_X, stream.X[:start][~train]])
            y_cal = [l for l, h in zip(stream.boot_y, hold_boot) if h] + list(stream.golden_y) + [
                l for l, t in zip(stream.truth[:start], train) if not t]
            head = fit_fn(X, y, X_cal, y_cal, stream.labels, seed)
            versions.append(ModelVersion.of(number, start, head, len(y), stream))
            if on_version:
                on_version(number, len(y))
        return cls(versions)

    def due(self, position: int, finals: dict[str, str]) -> ModelVersion | None:
        return self.by_start.get(position)


class OnlineTrainer:
    """Models retrained every `every` final labels on the run's OWN final labels, as the live trainer does."""

    def __init__(self, stream: Stream, every: int, *, seed: int = 0, fit_fn: Callable[..., TrainedHead] = fit,
                 first: ModelVersion | None = None) -> None:
        self.stream, self.every, self.seed, self.fit_fn, self.first = stream, every, seed, fit_fn, first
        self.hold_boot = _trainer_split(stream.boot_ids, HOLDOUT_FRACTION)
        self.hold_stream = _trainer_split(stream.ids, HOLDOUT_FRACTION)
        self.number = 0
        # run() fills these from the policy: items whose final label is an unchecked auto label, and whether
        # the trainer leaves them out of calibration (TrainerSettings.heldout_excludes_auto).
        self.unverified: set[str] = set()
        self.calibrate_verified_only = False

    def due(self, position: int, finals: dict[str, str]) -> ModelVersion | None:
        if position % self.every:
            return None
        self.number += 1
        if position == 0 and self.first is not None:
            return self.first  # the bootstrap model does not depend on the policy
        s = self.stream
        train = ~self.hold_stream[:position]
        X = np.vstack([s.boot_X[~self.hold_boot], s.X[:position][train]])
        y = [l for l, h in zip(s.boot_y, self.hold_boot) if not h] + [
            finals[i] for i, t in zip(s.ids[:position], train) if t]
        cal = ~train & np.array([not (self.calibrate_verified_only and i in self.unverified)
                                 for i in s.ids[:position]], dtype=bool)
        X_cal = np.vstack([s.boot_X[self.hold_boot], s.golden_X, s.X[:position][cal]])
        y_cal = [l for l, h in zip(s.boot_y, self.hold_boot) if h] + list(s.golden_y) + [
            finals[i] for i, c in zip(s.ids[:position], cal) if c]
        head = self.fit_fn(X, y, X_cal, y_cal, s.labels, self.seed)
        return ModelVersion.of(self.number, position, head, len(y), s)


# --- policies ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManualSingle:
    """One annotator per item, no model, no checks."""

    name: str = "manual_single"


@dataclass(frozen=True)
class ManualDouble:
    """Two annotators per item; when they disagree, an expert adjudicates."""

    name: str = "manual_double"


@dataclass(frozen=True)
class FixedThreshold:
    """Auto-accept above auto_accept, one reviewer down to single_review, two plus a tie-breaker below.

    No learning, spot checks, golden tasks, experts or qc: the reference frontier from the issue.
    """

    auto_accept: float = 0.95
    single_review: float = 0.70
    name: str = "fixed_threshold"


def _default(settings: type, name: str) -> Any:
    """A service setting's default as the class declares it (environment variables do not leak into the bench)."""
    return settings.model_fields[name].default


@dataclass(frozen=True)
class Labelmesh:
    """The live services' settings that matter here; each default IS the service's default, read from its class."""

    target_auto_error: float = _default(ProjectConfigured, "target_auto_error")  # project setting
    multi_annotators: int = _default(ProjectConfigured, "multi_annotators")  # project setting
    target_single_error: float = _default(RouterSettings, "target_single_error")
    spot_check_rate: float = _default(RouterSettings, "spot_check_rate")
    relearn_every: int = _default(RouterSettings, "relearn_every")
    min_evidence: int = _default(RouterSettings, "min_evidence")
    single_floor: float = _default(RouterSettings, "single_floor")
    auto_border_error: float | None = _default(RouterSettings, "auto_border_error")
    single_start: float | None = _default(RouterSettings, "single_start")
    step_up_when_refuted: bool = _default(RouterSettings, "step_up_when_refuted")
    expert_margin: float = _default(RouterSettings, "expert_margin")
    ood_similarity_floor: float = _default(RouterSettings, "ood_similarity_floor")
    # services/router/app.py takes the trainer's recommended thresholds for a project's first model, and for
    # every later one only with adopt_every_recommendation.
    follow_trainer_thresholds: bool = _default(RouterSettings, "adopt_every_recommendation")
    golden_rate: float = _default(GatewaySettings, "golden_rate")
    golden_settled_rate: float = _default(GatewaySettings, "golden_settled_rate")
    golden_warmup_tasks: int = _default(GatewaySettings, "golden_warmup_tasks")
    min_consensus_confidence: float = _default(QcSettings, "min_consensus_confidence")
    knn_k: int = _default(QcSettings, "knn_k")
    knn_threshold: float = _default(QcSettings, "knn_threshold")
    knn_min_similarity: float = _default(QcSettings, "knn_min_similarity")
    golden_threshold: float = _default(QcSettings, "golden_accuracy_threshold")
    golden_min_evidence: int = _default(QcSettings, "golden_min_evidence")
    expert_agreement_threshold: float = _default(QcSettings, "expert_agreement_threshold")
    expert_agreement_min_evidence: int = _default(QcSettings, "expert_agreement_min_evidence")
    confirm_single: bool = _default(QcSettings, "confirm_single")  # finalize.next_step(confirm_single=...)
    review_with_model: bool = _default(QcSettings, "review_with_model")  # finalize.next_step(review=...)
    second_opinion: bool = _default(QcSettings, "second_opinion")  # finalize.next_step(second_opinion=...)
    min_single_confidence: float = _default(QcSettings, "min_single_confidence")
    shown_error_share: float = _default(QcSettings, "shown_error_share")
    promotion_alpha: float = _default(TrainerSettings, "promotion_alpha")
    min_eval_items: int = _default(TrainerSettings, "min_eval_items")
    # The trainer judges and calibrates models on held-out human and known (bootstrap, golden) labels only, not
    # on auto labels (the previous model's own predictions): evaluation.judges_models.
    heldout_verified_only: bool = _default(TrainerSettings, "heldout_excludes_auto")
    name: str = "labelmesh"


Policy = ManualSingle | ManualDouble | FixedThreshold | Labelmesh


# --- the crowd -----------------------------------------------------------------------------------


class Crowd:
    """Hands tasks to simulated annotators as the gateway would, and keeps qc's golden record of each."""

    def __init__(self, team: list[SimulatedAnnotator], stream: Stream, rng: random.Random, *,
                 golden_rate: float = 0.0, golden_threshold: float = 0.8, golden_min_evidence: int = 10,
                 golden_settled_rate: float | None = None, golden_warmup_tasks: int = 0,
                 verdict_threshold: float = 0.0, verdict_min_evidence: int = 10) -> None:
        self.team = {a.name: a for a in team}
        self.labels = list(stream.labels)
        self.stream = stream
        self.rng = rng
        self.golden_rate = golden_rate
        self.golden_settled_rate = golden_rate if golden_settled_rate is None else golden_settled_rate
        self.golden_warmup_tasks = golden_warmup_tasks
        self.golden_threshold, self.golden_min_evidence = golden_threshold, golden_min_evidence
        self.served: Counter[str] = Counter()
        self.golden_seen: dict[str, set[str]] = {a: set() for a in self.team}
        self.golden_record: dict[str, list[int]] = {}  # annotator -> [correct, n]
        self.verdict_threshold, self.verdict_min_evidence = verdict_threshold, verdict_min_evidence
        self.verdict_record: dict[str, list[int]] = {}  # annotator -> [upheld, n]
        self.suspended: dict[str, int] = {}  # annotator -> stream position when suspended
        self.labels_by_role: Counter[str] = Counter()  # ordinary work labels by role
        self.golden_by_role: Counter[str] = Counter()
        self.model: ModelVersion | None = None
        self.position = 0

    def reliability(self) -> dict[str, float]:
        return {a: smoothed_accuracy(c, n) for a, (c, n) in self.golden_record.items() if n}

    def _pick(self, role: str, exclude: set[str]) -> SimulatedAnnotator:
        pool = [a for a in self.team.values() if a.role == role and a.name not in self.suspended
                and a.name not in exclude]
        if not pool:
            raise RuntimeError(f"no active {role} left who has not labelled this item")
        return self.rng.choices(pool, weights=[1.0 / a.seconds_per_label for a in pool])[0]

    def _golden(self, annotator: SimulatedAnnotator) -> None:
        index = {g: k for k, g in enumerate(self.stream.golden_ids)}
        item = choose_golden(annotator.name, self.served[annotator.name], self.stream.golden_ids,
                             self.golden_seen[annotator.name])
        if item is None:
            return
        self.golden_seen[annotator.name].add(item)
        self.served[annotator.name] += 1
        k = index[item]
        shown = [lbl for lbl, _ in self.model.top_k(k, golden=True)] if self.model else []
        answer = annotator.answer(self.stream.golden_y[k], self.labels, shown)
        self.golden_by_role[annotator.role] += 1
        self._record(self.golden_record, annotator.name, answer == self.stream.golden_y[k], self.golden_threshold,
                     self.golden_min_evidence)

    def verdict(self, verdict: Verdict) -> None:
        """An expert's verdict on a lone reviewer, and the suspension rule qc applies to them (threshold 0: off)."""
        self._record(self.verdict_record, verdict.annotator, verdict.upheld, self.verdict_threshold,
                     self.verdict_min_evidence)

    def _record(self, records: dict[str, list[int]], name: str, ok: bool, threshold: float,
                min_evidence: int) -> None:
        """One more outcome in a [right, n] record; qc's rule suspends the annotator when it flags them."""
        record = records.setdefault(name, [0, 0])
        record[0] += ok
        record[1] += 1
        if threshold and should_flag(golden_accuracy(record[0], record[1]), threshold=threshold,
                                     min_evidence=min_evidence):
            self.suspended.setdefault(name, self.position)

    def label(self, truth: str, suggested: Sequence[str], role: str, exclude: set[str]) -> tuple[str, str]:
        """One work label for an item from someone of `role` not in exclude; golden tasks may come first."""
        while True:
            annotator = self._pick(role, exclude)
            while self.golden_rate and annotator.name not in self.suspended and should_inject_golden(
                annotator.name, self.served[annotator.name],
                golden_rate_for(self.served[annotator.name], self.golden_rate, self.golden_settled_rate,
                                self.golden_warmup_tasks),
            ):
                before = self.served[annotator.name]
                self._golden(annotator)
                if self.served[annotator.name] == before:
                    break  # every golden item already seen: the gateway serves a normal task
            if annotator.name in self.suspended:
                continue
            self.served[annotator.name] += 1
            self.labels_by_role[role] += 1
            return annotator.name, annotator.answer(truth, self.labels, list(suggested))


# --- one run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prices:
    label: Decimal = Decimal("0.10")
    expert: Decimal = Decimal("0.50")


@dataclass
class RunResult:
    policy: str
    params: dict[str, Any]
    items: int = 0
    correct: int = 0
    ordinary_labels: int = 0  # work labels by non-experts
    expert_labels: int = 0  # work labels by experts
    golden_labels: int = 0  # answers to golden tasks, any role
    golden_expert_labels: int = 0
    escalations: int = 0  # items qc sent to an expert: disagreements, doubtful reviews, kNN flags
    second_opinions: int = 0  # doubtful lone reviews given a second ordinary reviewer first (qc's second_opinion)
    knn_flags: int = 0
    tiers: Counter[str] = field(default_factory=Counter)
    tier_errors: Counter[str] = field(default_factory=Counter)
    provenance: Counter[str] = field(default_factory=Counter)
    suspended: dict[str, int] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    thresholds: list[tuple[int, float, float]] = field(default_factory=list)
    curve: list[tuple[int, float, float]] = field(default_factory=list)  # (items, accuracy so far, labels/item)
    # Final labels that are the unchecked auto label (auto tier, no spot check), and how many are wrong; at each
    # curve point (items so far, those counts so far): the router's guarantee checked at every checkpoint.
    auto_items: int = 0
    auto_errors: int = 0
    auto_curve: list[tuple[int, int, int]] = field(default_factory=list)

    def summary(self, prices: Prices = Prices()) -> dict[str, Any]:
        n = max(self.items, 1)
        ordinary = self.ordinary_labels + self.golden_labels - self.golden_expert_labels
        expert = self.expert_labels + self.golden_expert_labels
        cost = human_cost(ordinary, expert, label_price=prices.label, expert_price=prices.expert)
        return {
            "policy": self.policy,
            "params": self.params,
            "items": self.items,
            "accuracy": self.correct / n,
            "human_labels_per_item": ordinary / n,  # ordinary labels, golden answers included
            "expert_labels_per_item": expert / n,
            "all_human_labels_per_item": (ordinary + expert) / n,
            "golden_labels_per_item": self.golden_labels / n,
            "cost_per_label_usd": float(cost / n),
            "escalations": self.escalations,
            "second_opinions": self.second_opinions,
            "knn_flags": self.knn_flags,
            "tiers": {k: v / n for k, v in sorted(self.tiers.items())},
            "tier_accuracy": {k: 1 - self.tier_errors[k] / v for k, v in sorted(self.tiers.items())},
            "provenance": dict(self.provenance),
            "suspended_at_item": self.suspended,
            "models": self.models,
            "thresholds": self.thresholds,
            "auto_accepted_error": self.auto_errors / self.auto_items if self.auto_items else None,
            "auto_curve": self.auto_curve,
        }


def _model_info(model: ModelVersion, promoted: bool, heldout: Any, reason: str,
                thresholds: Thresholds | None) -> dict[str, Any]:
    return {"version": model.version, "at_item": model.start, "train_size": model.train_size,
            "heldout_n": heldout.n, "heldout_accuracy": heldout.accuracy, "promoted": promoted, "reason": reason,
            "recommended": None if thresholds is None else [thresholds.auto_accept, thresholds.single_review]}


def run(stream: Stream, policy: Policy, team: list[SimulatedAnnotator], *, models: ModelSource | None = None,
        nearest: np.ndarray | None = None, neighbours: Neighbours | None = None, seed: int = 0,
        curve_every: int = 500) -> RunResult:
    """Label the whole stream under `policy` with `team` (fresh annotators: they keep state)."""
    rng = random.Random(f"quality/{policy.name}/{seed}")
    is_lm = isinstance(policy, Labelmesh)
    crowd = Crowd(team, stream, rng, golden_rate=policy.golden_rate if is_lm else 0.0,
                  golden_threshold=policy.golden_threshold if is_lm else 0.8,
                  golden_min_evidence=policy.golden_min_evidence if is_lm else 10,
                  golden_settled_rate=policy.golden_settled_rate if is_lm else None,
                  golden_warmup_tasks=policy.golden_warmup_tasks if is_lm else 0,
                  verdict_threshold=policy.expert_agreement_threshold if is_lm else 0.0,
                  verdict_min_evidence=policy.expert_agreement_min_evidence if is_lm else 10)
    params = {k: v for k, v in asdict(policy).items() if k != "name"}
    result = RunResult(policy.name, params)
    uses_model = isinstance(policy, FixedThreshold | Labelmesh)
    if uses_model and models is None:
        raise ValueError(f"{policy.name} needs a model source")
    k = len(stream.labels)
    # Trainer state: held-out items with their final labels (bootstrap and golden labels are known).
    hold_stream = _trainer_split(stream.ids, HOLDOUT_FRACTION)
    hold_boot = _trainer_split(stream.boot_ids, HOLDOUT_FRACTION)
    hold_X = [stream.boot_X[hold_boot], stream.golden_X]
    hold_y = [l for l, h in zip(stream.boot_y, hold_boot) if h] + list(stream.golden_y)
    champion: ModelVersion | None = None
    finals: dict[str, str] = {}
    if isinstance(models, OnlineTrainer):
        models.calibrate_verified_only = is_lm and policy.heldout_verified_only
    # Router state.
    if isinstance(policy, FixedThreshold):
        thresholds = Thresholds(auto_accept=policy.auto_accept, single_review=policy.single_review)
        routing = RoutingPolicy(2, expert_margin=0.0, ood_similarity_floor=-1.0)
    else:
        # The router's borders before any evidence (evidence.ProjectLearning.in_force): auto-accept off.
        thresholds = NO_EVIDENCE if is_lm else Thresholds()
        routing = RoutingPolicy(policy.multi_annotators, policy.expert_margin, policy.ood_similarity_floor) \
            if is_lm else RoutingPolicy()
    evidence: list[Observation] = []
    unlearned = 0

    def consensus(votes: Sequence[tuple[str, str]], reliability: dict[str, float]) -> tuple[str, float, bool]:
        r = weighted_consensus(votes, reliability, min_confidence=policy.min_consensus_confidence, n_classes=k)
        return r.label, r.confidence, r.resolved

    offset = len(stream.boot_ids) + len(stream.golden_ids)

    def row_label(row: int) -> str:
        if row < len(stream.boot_ids):
            return stream.boot_y[row]
        if row < offset:
            return stream.golden_y[row - len(stream.boot_ids)]
        return finals[stream.ids[row - offset]]  # an earlier stream item: final by now

    def knn_flagged(i: int, label: str) -> bool:
        """qc's _knn_check: services.qc.domain.knn_check over the item's nearest labelled items."""
        if neighbours.rows.shape[1] < policy.knn_k:
            raise ValueError(f"neighbours hold {neighbours.rows.shape[1]} per item, qc looks at {policy.knn_k}")
        rows = neighbours.rows[i, :policy.knn_k]
        rows = rows[rows >= 0]
        return knn_check(stream.X[i], label, neighbours.X[rows], [row_label(r) for r in rows],
                         [str(r) for r in rows], k=policy.knn_k, threshold=policy.knn_threshold,
                         min_similarity=policy.knn_min_similarity).flagged

    for i, (item_id, truth) in enumerate(zip(stream.ids, stream.truth)):
        crowd.position = i
        if uses_model:
            new = models.due(i, finals)
            if new is not None:
                X_h = np.vstack(hold_X) if hold_y else stream.X[:0]
                challenger = evaluate(new.head, X_h, hold_y)
                if is_lm:
                    current = evaluate(champion.head, X_h, hold_y) if champion else None
                    decision = decide_promotion(challenger, current, policy.promotion_alpha, policy.min_eval_items)
                    promoted, reason = decision.promote, decision.reason
                else:
                    promoted, reason = True, "the fixed policy always takes the newest model"
                recommended = None
                if promoted:
                    champion = new
                    crowd.model = new
                    if is_lm:
                        recommended = recommend_thresholds(challenger, policy.target_auto_error)
                        # The router takes the first model's recommendation, later ones only if told to.
                        if policy.follow_trainer_thresholds or not result.models:
                            thresholds = starting_thresholds(recommended,
                                                             None if result.models else policy.single_start,
                                                             in_force=thresholds)
                            result.thresholds.append((i, thresholds.auto_accept, thresholds.single_review))
                result.models.append(_model_info(new, promoted, challenger, reason, recommended))
        result.items += 1
        if isinstance(policy, ManualSingle):
            _, label = crowd.label(truth, (), "annotator", set())
            tier, final, verified = "manual", label, True
        elif isinstance(policy, ManualDouble):
            a, x = crowd.label(truth, (), "annotator", set())
            _, y = crowd.label(truth, (), "annotator", {a})
            tier, final, verified = "manual", x, True
            if x != y:
                result.escalations += 1
                _, final = crowd.label(truth, (), "expert", set())
        else:
            top = champion.top_k(i)
            shown = [lbl for lbl, _ in top]
            prelabel = Prelabel(top, None if isinstance(policy, FixedThreshold) or nearest is None else nearest[i])
            spot = is_lm and is_spot_checked(PROJECT, item_id, policy.spot_check_rate)
            decision = decide_tier(prelabel, thresholds, routing, spot_check=spot)
            tier = decision.tier.value
            if isinstance(policy, FixedThreshold):
                final = _fixed_labels(crowd, decision, top, truth, shown)
                verified = decision.tier is not Tier.AUTO
            else:
                review = ReviewPolicy(k, policy.min_single_confidence, policy.shown_error_share) \
                    if policy.review_with_model else None
                final, verified = _labelmesh_labels(crowd, decision, prelabel, thresholds, routing, truth, shown,
                                                    consensus, result, policy.confirm_single, review,
                                                    None if neighbours is None else partial(knn_flagged, i),
                                                    second_opinion=policy.second_opinion)
                if verified and top:
                    # A spot check keeps its 1/rate weight when qc escalated it. (services/router/app.py looks up
                    # the item's latest decision, which a re-route replaces; the difference only arises with
                    # confirm_single, which escalates spot checks that overrule the auto label.)
                    weight = 1.0 / policy.spot_check_rate if decision.spot_check else 1.0
                    evidence.append(Observation(prelabel.confidence, top[0][0] == final, weight))
                    unlearned += 1
                    if unlearned >= policy.relearn_every:
                        unlearned = 0
                        new_thresholds = learn_thresholds(
                            evidence, thresholds, target_auto_error=policy.target_auto_error,
                            target_single_error=policy.target_single_error, min_evidence=policy.min_evidence,
                            single_floor=policy.single_floor, step_up_when_refuted=policy.step_up_when_refuted,
                            auto_border_error=policy.auto_border_error,
                        ).thresholds
                        if new_thresholds != thresholds:
                            thresholds = new_thresholds
                            result.thresholds.append((i, thresholds.auto_accept, thresholds.single_review))
        finals[item_id] = final
        if not verified and isinstance(models, OnlineTrainer):
            models.unverified.add(item_id)
        if hold_stream[i] and (verified or not (is_lm and policy.heldout_verified_only)):
            hold_X.append(stream.X[i:i + 1])
            hold_y.append(final)
        result.tiers[tier] += 1
        result.correct += final == truth
        result.tier_errors[tier] += final != truth
        if tier == Tier.AUTO.value and not verified:
            result.auto_items += 1
            result.auto_errors += final != truth
        if curve_every and (i + 1) % curve_every == 0:
            result.auto_curve.append((i + 1, result.auto_items, result.auto_errors))
            spent = sum(crowd.labels_by_role.values()) + sum(crowd.golden_by_role.values())
            result.curve.append((i + 1, result.correct / result.items, spent / result.items))

    result.ordinary_labels = crowd.labels_by_role["annotator"]
    result.expert_labels = crowd.labels_by_role["expert"]
    result.golden_labels = sum(crowd.golden_by_role.values())
    result.golden_expert_labels = crowd.golden_by_role["expert"]
    result.suspended = dict(crowd.suspended)
    return result


def _fixed_labels(crowd: Crowd, decision: Any, top: list[tuple[str, float]], truth: str,
                  shown: list[str]) -> str:
    if decision.tier is Tier.AUTO:
        return top[0][0]
    first_annotator, first = crowd.label(truth, shown, "annotator", set())
    if decision.tier is Tier.SINGLE:
        return first
    second_annotator, second = crowd.label(truth, shown, "annotator", {first_annotator})
    if first == second:
        return first
    _, third = crowd.label(truth, shown, "annotator", {first_annotator, second_annotator})
    return first if third == first else second if third == second else third


def _labelmesh_labels(crowd: Crowd, decision: Any, prelabel: Prelabel, thresholds: Thresholds,
                      routing: RoutingPolicy, truth: str, shown: list[str], consensus: Any,
                      result: RunResult, confirm_single: bool,
                      review: ReviewPolicy | None = None,
                      knn_flagged: Callable[[str], bool] | None = None,
                      second_opinion: bool = False) -> tuple[str, bool]:
    """Collect the labels the routing asks for, let qc's next_step decide, re-route escalations to an expert.

    knn_flagged(label): qc's kNN check on a human final label (single review or consensus); a flagged label
    goes to an expert instead (the router re-routes an item with an open flag to the expert tier).
    """
    tier = decision.tier
    votes: list[Vote] = []
    if tier is Tier.EXPERT:
        name, label = crowd.label(truth, shown, "expert", set())
        votes.append(Vote(name, label, expert=True))
    else:
        for _ in range(decision.required_annotators):
            name, label = crowd.label(truth, shown, "annotator", {v.annotator for v in votes})
            votes.append(Vote(name, label))
    state = ItemState(
        tier=EventTier(tier.value), required=decision.required_annotators, spot_check=decision.spot_check,
        escalated=tier is Tier.EXPERT, prelabel=(prelabel.top_k[0][0], prelabel.confidence) if prelabel.top_k
        else None, top_k=prelabel.top_k, votes=tuple(votes),
    )
    step = next_step(state, crowd.reliability(), consensus, confirm_single=confirm_single, review=review,
                     second_opinion=second_opinion)
    if isinstance(step, SecondOpinion):  # the router re-routes it for two, the first label counted
        result.second_opinions += 1
        name, label = crowd.label(truth, shown, "annotator", {v.annotator for v in votes})
        state = replace(state, tier=EventTier.MULTI, required=2, second_opinion=True,
                        votes=(*state.votes, Vote(name, label)))
        step = next_step(state, crowd.reliability(), consensus, confirm_single=confirm_single, review=review,
                         second_opinion=second_opinion)
    knn = (isinstance(step, Final) and step.provenance in (Provenance.SINGLE_REVIEW, Provenance.CONSENSUS)
           and knn_flagged is not None and knn_flagged(step.label))
    if knn:
        result.knn_flags += 1
    if isinstance(step, Escalate) or knn:
        result.escalations += 1
        rerouted = decide_tier(prelabel, thresholds, routing, unresolved_disagreement=not knn, open_flag=knn)
        tier = rerouted.tier
        name, label = crowd.label(truth, shown, "expert", set())
        state = replace(state, tier=EventTier(tier.value), escalated=True,
                        votes=(*state.votes, Vote(name, label, expert=True)))
        step = next_step(state, crowd.reliability(), consensus, confirm_single=confirm_single, review=review)
        verdict = lone_reviewer_verdict(state.votes)
        if verdict is not None:
            crowd.verdict(verdict)
    if isinstance(step, Final):
        result.provenance[step.provenance.value] += 1
        return step.label, step.verified and step.provenance is not Provenance.IMPORTED
    raise RuntimeError(f"qc did not finalise an item with all its labels: {step}")
