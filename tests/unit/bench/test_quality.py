"""The quality benchmark's core on a tiny synthetic dataset: its accounting, and baselines that match the team."""

import math
from decimal import Decimal

import numpy as np
import pytest

from bench.quality_sim import (
    FixedThreshold,
    Labelmesh,
    ManualDouble,
    ManualSingle,
    OnlineTrainer,
    OracleSchedule,
    Prices,
    Stream,
    nearest_labelled_similarity,
    run,
)
from labelmesh.ml.head import train_head
from labelmesh.simulation import SimulatedAnnotator, confusable_intents

LABELS = tuple(f"intent_{c}" for c in "abcdef")


def synthetic(n_stream: int, n_boot: int = 120, n_golden: int = 30, seed: int = 0, spread: float = 0.55) -> Stream:
    """Six Gaussian clusters in 16 dimensions, unit-normalised like sentence embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(LABELS), 16))

    def draw(n: int, prefix: str):
        y = rng.integers(0, len(LABELS), n)
        X = centres[y] + spread * rng.normal(size=(n, 16)) * np.linalg.norm(centres, axis=1).mean() / 4
        X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
        return X, [LABELS[i] for i in y], [f"{prefix}-{i}" for i in range(n)]

    (bX, by, bi), (gX, gy, gi), (sX, sy, si) = draw(n_boot, "boot"), draw(n_golden, "gold"), draw(n_stream, "item")
    return Stream(LABELS, si, sX, sy, bi, bX, by, gi, gX, gy)


def quick_fit(X, y, X_cal, y_cal, labels, seed):
    """One fit per model, calibrated on the held-out items (the benchmark's own fit uses CV on tiny sets)."""
    return train_head(X, y, X_cal, y_cal, encoder_name="test", classes=labels, seed=seed)


def team(accuracy: float = 0.9, similar=None):
    people = [SimulatedAnnotator(f"ann-{i}", accuracy=accuracy, similar=similar or {}) for i in range(5)]
    return people + [SimulatedAnnotator(f"expert-{i}", accuracy=0.97, role="expert") for i in range(2)]


def within_binomial(successes: int, n: int, p: float, z: float = 4.0) -> bool:
    return abs(successes / n - p) <= z * math.sqrt(p * (1 - p) / n)


def test_manual_single_costs_one_label_per_item_and_is_as_accurate_as_the_annotators():
    stream = synthetic(3000)
    people = team(0.9)
    result = run(stream, ManualSingle(), people)
    summary = result.summary()
    assert result.items == 3000
    assert result.ordinary_labels == 3000 and result.expert_labels == 0 and result.golden_labels == 0
    assert summary["human_labels_per_item"] == 1.0
    assert summary["cost_per_label_usd"] == pytest.approx(0.10)
    assert within_binomial(result.correct, result.items, 0.9)
    assert sum(p.answered for p in people) == 3000  # labels counted by the annotators themselves


def test_manual_double_adjudicates_every_disagreement_with_one_expert_label():
    stream = synthetic(2000)
    people = team(0.9)
    result = run(stream, ManualDouble(), people)
    summary = result.summary(Prices(Decimal("0.10"), Decimal("0.50")))
    assert result.ordinary_labels == 4000
    assert result.expert_labels == result.escalations
    # Two independent 90% annotators disagree at least when exactly one is wrong: 2 * 0.9 * 0.1.
    assert result.escalations / 2000 >= 0.18 - 4 * math.sqrt(0.18 * 0.82 / 2000)
    assert summary["cost_per_label_usd"] == pytest.approx(0.20 + 0.50 * result.escalations / 2000)
    assert summary["accuracy"] > 0.95
    assert sum(p.answered for p in people) == 4000 + result.escalations


@pytest.fixture(scope="module")
def small():
    stream = synthetic(1200)
    return stream, OracleSchedule.build(stream, every=400, fit_fn=quick_fit), nearest_labelled_similarity(stream)


def test_labelmesh_run_finalises_every_item_and_its_label_counts_match_what_annotators_answered(small):
    stream, schedule, nearest = small
    people = team(0.9)
    result = run(stream, Labelmesh(), people, models=schedule, nearest=nearest)
    summary = result.summary()
    assert result.items == len(stream) == sum(result.tiers.values())
    answered = sum(p.answered for p in people)
    assert answered == result.ordinary_labels + result.expert_labels + result.golden_labels
    assert result.golden_labels > 0  # golden tasks were injected
    ordinary = result.ordinary_labels + result.golden_labels - result.golden_expert_labels
    assert summary["human_labels_per_item"] == pytest.approx(ordinary / len(stream))
    expected_cost = (Decimal("0.10") * ordinary
                     + Decimal("0.50") * (result.expert_labels + result.golden_expert_labels)) / len(stream)
    assert summary["cost_per_label_usd"] == pytest.approx(float(expected_cost))
    assert [m["version"] for m in result.models] == [1, 2, 3]
    assert sum(result.provenance.values()) == len(stream)


def test_nearest_similarity_looks_only_at_earlier_items():
    stream = synthetic(50, n_boot=0, n_golden=0)
    stream = Stream(LABELS, stream.ids, stream.X, stream.truth, [], stream.X[:0], [], [], stream.X[:0], [])
    nearest = nearest_labelled_similarity(stream, block=16)
    X = stream.X.astype(np.float64)
    assert nearest[0] == -1.0  # nothing labelled before the first item
    for i in (1, 17, 49):
        assert nearest[i] == pytest.approx((X[:i] @ X[i]).max(), abs=1e-5)


def test_fixed_threshold_extremes_auto_label_everything_or_nothing(small):
    stream, schedule, _ = small
    everything = run(stream, FixedThreshold(0.0, 0.0), team(), models=schedule)
    assert everything.ordinary_labels == 0 and everything.tiers == {"auto": len(stream)}
    nothing = run(stream, FixedThreshold(1.0, 1.0), team(), models=schedule)
    single, multi = nothing.tiers.get("single", 0), nothing.tiers.get("multi", 0)
    assert nothing.tiers.get("auto", 0) == 0 and single + multi == len(stream)
    # One label per single review; two per multi item, plus a tie-breaker where they disagree.
    assert single + 2 * multi <= nothing.ordinary_labels <= single + 3 * multi


def test_online_trainer_retrains_on_the_run_s_own_labels(small):
    stream, schedule, nearest = small
    online = OnlineTrainer(stream, every=400, fit_fn=quick_fit, first=schedule.by_start[0])
    result = run(stream, Labelmesh(), team(), models=online, nearest=nearest)
    assert [m["at_item"] for m in result.models] == [0, 400, 800]
    assert result.items == len(stream)
    # The trainer leaves unchecked auto labels out of calibration: run() tells it which those are.
    assert online.calibrate_verified_only and len(online.unverified) == result.provenance.get("auto", 0) > 0


def test_unhinted_mistakes_go_to_the_nearest_intents():
    X = np.array([[1.0, 0.0, 0.0], [0.95, 0.3, 0.0], [0.0, 0.0, 1.0], [0.0, 0.2, 0.98]])
    similar = confusable_intents(X, ["a", "b", "c", "d"], k=1)
    assert similar == {"a": ("b",), "b": ("a",), "c": ("d",), "d": ("c",)}
    sloppy = SimulatedAnnotator("x", accuracy=0.0, confusable_share=1.0, similar=similar)
    assert {sloppy.answer("a", ["a", "b", "c", "d"]) for _ in range(50)} == {"b"}
    # A shown pre-label still comes first: the mistake is one of the suggestions.
    assert {sloppy.answer("a", ["a", "b", "c", "d"], ["a", "c"]) for _ in range(50)} == {"c"}


def test_router_and_trainer_knobs_change_what_they_say(small):
    stream, schedule, nearest = small
    follows = run(stream, Labelmesh(follow_trainer_thresholds=True, heldout_verified_only=False), team(),
                  models=schedule, nearest=nearest)
    assert follows.thresholds[0][0] == 0  # the first model's recommendation is put in force at once
    assert {400, 800} <= {position for position, _, _ in follows.thresholds}, "and every later one"
    # The router's default: the first recommendation starts the project off, later ones are not taken.
    own = run(stream, Labelmesh(follow_trainer_thresholds=False), team(), models=schedule, nearest=nearest)
    assert own.thresholds[0][0] == 0
    assert all(position not in (400, 800) for position, _, _ in own.thresholds)
    # The router starts the single border no higher than single_start (thresholds.starting_thresholds).
    started = run(stream, Labelmesh(single_start=0.2), team(), models=schedule, nearest=nearest)
    unstarted = run(stream, Labelmesh(single_start=None), team(), models=schedule, nearest=nearest)
    assert started.thresholds[0] == (0, unstarted.thresholds[0][1], min(0.2, unstarted.thresholds[0][2]))
    assert unstarted.thresholds[0][2] > 0.2
    verified = run(stream, Labelmesh(heldout_verified_only=True, follow_trainer_thresholds=True), team(),
                   models=schedule, nearest=nearest)
    # Auto labels never reach the held-out set (the trainer's default), so the last model is judged on fewer items.
    assert verified.models[-1]["heldout_n"] < follows.models[-1]["heldout_n"]


def test_labelmesh_defaults_are_the_services_defaults():
    from schemas.events import ProjectConfigured
    from services.gateway.settings import GatewaySettings
    from services.qc.settings import QcSettings
    from services.router.settings import RouterSettings

    policy = Labelmesh()
    router, qc, gateway = RouterSettings(), QcSettings(), GatewaySettings()
    assert (policy.spot_check_rate, policy.target_single_error, policy.single_floor, policy.step_up_when_refuted,
            policy.follow_trainer_thresholds) == (router.spot_check_rate, router.target_single_error,
                                                  router.single_floor, router.step_up_when_refuted,
                                                  router.adopt_every_recommendation)
    assert (policy.confirm_single, policy.review_with_model, policy.min_single_confidence,
            policy.shown_error_share) == (qc.confirm_single, qc.review_with_model, qc.min_single_confidence,
                                          qc.shown_error_share)
    assert (policy.golden_rate, policy.golden_settled_rate, policy.golden_warmup_tasks) == (
        gateway.golden_rate, gateway.golden_settled_rate, gateway.golden_warmup_tasks)
    assert (policy.expert_agreement_threshold, policy.expert_agreement_min_evidence) == (
        qc.expert_agreement_threshold, qc.expert_agreement_min_evidence)
    assert policy.multi_annotators == ProjectConfigured.model_fields["multi_annotators"].default
    from services.trainer.settings import TrainerSettings

    assert policy.heldout_verified_only == TrainerSettings().heldout_excludes_auto
    assert policy.promotion_alpha == TrainerSettings().promotion_alpha
    assert (policy.auto_border_error, policy.single_start) == (router.auto_border_error, router.single_start)


def test_labelled_neighbours_are_qc_s_index_at_the_item_s_turn(small):
    from bench.quality_sim import labelled_neighbours

    stream, schedule, nearest = small
    nb = labelled_neighbours(stream, k=10, block=128)
    offset = len(stream.boot_ids) + len(stream.golden_ids)
    known = np.vstack([stream.boot_X, stream.golden_X, stream.X]).astype(np.float64)
    for i in (0, 5, 129, 1199):
        sims = known[:offset + i] @ stream.X[i].astype(np.float64)
        assert set(nb.rows[i]) == set(np.argsort(-sims)[:10])
        assert nb.rows[i].max() < offset + i, "only items labelled before this one"
    # The kNN check runs in labelmesh runs and sends what it flags to an expert.
    result = run(stream, Labelmesh(), team(), models=schedule, nearest=nearest, neighbours=nb)
    assert 0 <= result.knn_flags <= result.escalations and result.items == len(stream)
