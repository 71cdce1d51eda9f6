"""The trainer's pure rules: folding a batch into examples, when a retrain is due, what it trains and calibrates on,
and its announcement."""

import numpy as np
import pytest

from schemas.events import ItemPrelabeled, LabelFinalized, Provenance
from services.router.domain.tiers import Thresholds
from services.trainer.domain.evaluation import Evaluation
from services.trainer.domain.examples import fold_events
from services.trainer.domain.lineage import training_set_version
from services.trainer.domain.training import announcement, fit, retrain_due, run_metrics, training_data


def final(item: str, label: str = "a", version: int = 1, *, golden: bool = False, project: str = "p",
          provenance: Provenance = Provenance.SINGLE_REVIEW) -> LabelFinalized:
    return LabelFinalized(producer="t", project=project, item_id=item, label=label, version=version,
                          provenance=provenance, confidence=1.0, human_labels=1, expert_labels=0, verified=True,
                          golden=golden, guideline_version=2)


def embedded(item: str, project: str = "p") -> ItemPrelabeled:
    return ItemPrelabeled(producer="t", project=project, item_id=item, encoder="enc", embedding=(0.5, -1.0))


def test_embedding_and_label_of_one_item_merge_into_one_example():
    changes = fold_events([embedded("1"), final("1")], {}, holdout_fraction=0.0)
    assert list(changes.fields) == ["p/1"]
    fields = changes.fields["p/1"]
    assert np.array_equal(np.frombuffer(fields["embedding"], np.float32), [0.5, -1.0])
    assert fields["label"] == "a" and fields["version"] == 1 and fields["holdout"] is False
    assert [v["key"] for v in changes.versions] == ["p/1@1"] and changes.labelled == {"p"}


def test_only_a_newer_label_version_is_taken():
    changes = fold_events([final("1", "b", 2), final("1", "c", 3), final("1", "d", 2), final("2", "x", 1)],
                          {"p/1": 2, "p/2": 0}, holdout_fraction=0.0)
    assert changes.fields["p/1"]["label"] == "c" and changes.fields["p/2"]["label"] == "x"
    assert [v["key"] for v in changes.versions] == ["p/1@3", "p/2@1"]


def test_a_stale_label_still_marks_its_project_and_embeddings_alone_do_not():
    changes = fold_events([final("1", version=1, project="q"), embedded("9")], {"q/1": 1}, holdout_fraction=0.0)
    assert changes.labelled == {"q"} and "q/1" not in changes.fields and "p/9" in changes.fields


def test_golden_items_are_always_held_out_and_others_by_a_fixed_share():
    assert fold_events([final("1", golden=True)], {}, holdout_fraction=0.0).fields["p/1"]["holdout"] is True
    shares = [fold_events([final(str(i))], {}, holdout_fraction=0.3).fields[f"p/{i}"]["holdout"] for i in range(400)]
    assert 0.2 < np.mean(shares) < 0.4
    assert shares == [fold_events([final(str(i))], {}, holdout_fraction=0.3).fields[f"p/{i}"]["holdout"]
                      for i in range(400)]


@pytest.mark.parametrize(("available", "trained_on", "champion", "by_time", "due"), [
    (199, 0, False, False, False), (200, 0, False, False, True), (200, 0, False, True, True),
    (699, 200, True, False, False), (700, 200, True, False, True),
    (201, 200, True, True, True), (200, 200, True, True, False),
])
def test_retrain_due(available, trained_on, champion, by_time, due):
    assert retrain_due(available=available, trained_on=trained_on, has_champion=champion, first_model_min=200,
                       retrain_every=500, by_time=by_time) is due


def example(i: int, label: str, vec, *, provenance: str = "single_review", guideline=1):
    return {"item_id": str(i), "version": 1, "label": label, "encoder": "enc", "provenance": provenance,
            "guideline_version": guideline, "embedding": np.asarray(vec, np.float32).tobytes()}


def blob_docs(n: int, seed: int, start: int = 0, **kw):
    rng = np.random.default_rng(seed)
    centres = {"a": (1.0, 0.0, 0.0), "b": (0.0, 1.0, 0.0), "c": (0.0, 0.0, 1.0)}
    return [example(start + i, label, np.array(centres[label]) + rng.normal(0, 0.3, 3), **kw)
            for i, label in enumerate(["a", "b", "c"] * n)]


def test_training_data_leaves_unchecked_auto_labels_out_of_the_judging_set():
    train = blob_docs(5, 0)
    held = blob_docs(2, 1, 100) + blob_docs(1, 2, 200, provenance="auto")
    data = training_data(train, held, exclude_auto=True)
    assert data.X.shape == (15, 3) and data.X_eval.shape == (6, 3) and data.encoder == "enc"
    assert data.version == training_set_version([(d["item_id"], 1, d["label"]) for d in train])
    assert training_data(train, held, exclude_auto=False).X_eval.shape == (9, 3)
    assert training_data(train, [], exclude_auto=True).X_eval.shape == (0, 3)


def test_the_temperature_comes_from_the_holdout_only_when_it_is_large_enough():
    data = training_data(blob_docs(20, 0), blob_docs(10, 1, 100), exclude_auto=True)
    given = fit(data, ("a", "b", "c"), None, calibration_min_holdout=30, warm_start=True, fit_threads=1)
    assert given.metrics["calibration_source"] == "given" and not given.metrics["warm_start"]
    folds = fit(data, ("a", "b", "c"), given, calibration_min_holdout=31, warm_start=True, fit_threads=1)
    assert folds.metrics["calibration_source"].startswith("cv") and folds.metrics["warm_start"]
    other = fit(data, ("a", "b", "c"), given, calibration_min_holdout=30, warm_start=False, fit_threads=1)
    assert not other.metrics["warm_start"]


def test_the_announcement_drops_metrics_that_are_not_finite_and_has_a_stable_id():
    empty = Evaluation(0, float("nan"), float("nan"), ())
    metrics = run_metrics(empty, None, 1.5, 10)
    assert "champion_heldout_accuracy" not in metrics
    kw = {"producer": "trainer", "project": "p", "version": 3, "encoder": "enc", "artifact_uri": "gridfs://x",
          "sha256": "0" * 64, "size": 10, "training_set": "ts", "training_set_size": 10, "metrics": metrics,
          "temperature": 0.9, "thresholds": Thresholds(auto_accept=0.99, single_review=0.5)}
    event = announcement(**kw)
    assert event.heldout_metrics == {"heldout_n": 0.0, "train_seconds": 1.5, "train_size": 10.0}
    assert event.event_id == announcement(**kw).event_id != announcement(**{**kw, "version": 4}).event_id
    assert event.artifact.content_b64 == "" and event.calibration == {"temperature": 0.9}
    assert run_metrics(empty, Evaluation(5, 0.8, 0.1, ()), 1.0, 1)["champion_heldout_accuracy"] == 0.8


def test_a_run_without_held_out_items_records_only_finite_metrics():
    from services.trainer.domain.training import finite

    metrics = finite(run_metrics(Evaluation(0, float("nan"), float("nan"), ()), None, 1.5, 12))
    assert metrics == {"heldout_n": 0.0, "train_seconds": 1.5, "train_size": 12.0}, \
        "NaN drops FerretDB's connection when the registry stores it"
