"""The demo report's numbers, computed from a small hand-made event log whose answers are known."""

from datetime import UTC, datetime, timedelta

from labelmesh.report import (
    accuracy_vs_effort,
    annotator_accuracy,
    checkpoints,
    effort_curve,
    fixed_threshold_baseline,
    flag_timeline,
    golden_accuracy,
    tier_errors,
    tier_timeline,
    write_html,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


LOG = {
    "item.routed": [
        {"item_id": "a", "tier": "auto", "occurred_at": at(0)},
        {"item_id": "b", "tier": "single", "occurred_at": at(1)},
        {"item_id": "c", "tier": "single", "occurred_at": at(2)},
        {"item_id": "c", "tier": "expert", "occurred_at": at(3)},  # re-routed: the first tier counts
        {"item_id": "g", "tier": "single", "occurred_at": at(3)},  # golden: not a work item
    ],
    "label.submitted": [
        {"item_id": "b", "annotator_id": "ann-1", "label": "x", "occurred_at": at(1.5)},
        {"item_id": "c", "annotator_id": "ann-2", "label": "y", "occurred_at": at(2.5)},
        {"item_id": "c", "annotator_id": "exp", "label": "x", "occurred_at": at(3.5)},
        {"item_id": "g", "annotator_id": "ann-1", "label": "x", "occurred_at": at(4)},
        {"item_id": "g", "annotator_id": "ann-2", "label": "y", "occurred_at": at(4)},
    ],
    "label.finalized": [
        {"item_id": "a", "label": "y", "occurred_at": at(0.5)},  # wrong auto label
        {"item_id": "b", "label": "x", "occurred_at": at(2)},
        {"item_id": "c", "label": "x", "occurred_at": at(4)},
    ],
    "qc.flagged": [{"kind": "disagreement", "subject_id": "c", "message": "2 labels differ", "occurred_at": at(3)}],
    "model.updated": [{"model_version": 1, "training_set_size": 10, "heldout_metrics": {"heldout_accuracy": 0.8},
                       "occurred_at": at(0)}],
}
TRUTH = {"a": "x", "b": "x", "c": "x", "g": "x"}
WORK = {"a", "b", "c"}


def test_tiers_count_each_work_item_once_at_its_first_tier():
    series = tier_timeline(LOG, WORK)
    assert series["auto"] == [(0.0, 1)]
    assert series["single"] == [(1.0, 1), (2.0, 2)]
    assert series["expert"] == [] and series["multi"] == []


def test_accuracy_vs_effort_counts_labels_submitted_before_each_final():
    assert accuracy_vs_effort(LOG, TRUTH, WORK) == [(0.0, 0.0, 1), (0.5, 0.5, 2), (1.0, 2 / 3, 3)]


def test_golden_accuracy_has_a_wilson_interval_around_the_rate():
    golden = golden_accuracy(LOG, {"g": "x"})
    assert golden["ann-1"][:2] == (1, 1) and golden["ann-2"][:2] == (0, 1)
    correct, n, low, high = golden["ann-1"]
    assert 0.0 < low < 1.0 and high == 1.0


def test_a_perfect_golden_record_keeps_its_rate_inside_the_interval_and_the_page_renders(tmp_path):
    answers = [{"item_id": f"g{i}", "annotator_id": "ann-1", "label": "x", "occurred_at": at(i)} for i in range(20)]
    log = {**LOG, "label.submitted": answers}
    truth = {f"g{i}": "x" for i in range(20)}
    correct, n, low, high = golden_accuracy(log, truth)["ann-1"]
    assert (correct, n) == (20, 20) and low < 1.0 and high >= correct / n  # Wilson gives 0.9999999999999999
    path = write_html(tmp_path / "r.html", {"items": 3, "final_accuracy": 2 / 3, "models": []}, log, TRUTH,
                      sorted(WORK), truth, namespace="ns")
    assert path.read_text().count("data:image/png;base64,") == 5


def test_flags_are_placed_in_minutes_since_start():
    assert flag_timeline(LOG) == [(3.0, "disagreement", "c", "2 labels differ")]


def test_html_report_is_one_self_contained_page(tmp_path):
    path = write_html(tmp_path / "r.html", {"items": 3, "final_accuracy": 2 / 3, "models": []}, LOG, TRUTH,
                      sorted(WORK), {"g": "x"}, namespace="ns<1>")
    html = path.read_text()
    assert html.count("data:image/png;base64,") == 5
    assert "ns&lt;1&gt;" in html and "2 labels differ" in html and "0.667" in html


def test_the_header_prints_the_item_count_not_the_dict_method(tmp_path):
    html = write_html(tmp_path / "r.html", {"items": 3, "final_accuracy": 2 / 3, "models": []}, LOG, TRUTH,
                      sorted(WORK), {"g": "x"}, namespace="ns").read_text()
    assert "<p>3 items through the pipeline;" in html
    assert "built-in method" not in html


def test_the_effort_curve_is_ordered_by_labels_spent_so_it_never_doubles_back():
    # In time order labels per item goes 0 -> 0.5 -> 1.0 -> 0.75 (a fourth item auto-labelled last).
    log = {**LOG, "label.finalized": [*LOG["label.finalized"],
                                      {"item_id": "d", "label": "x", "occurred_at": at(5)}]}
    work, truth = WORK | {"d"}, {**TRUTH, "d": "x"}
    timed = accuracy_vs_effort(log, truth, work)
    assert [p[0] for p in timed] == [0.0, 0.5, 1.0, 0.75]
    ordered = effort_curve(log, truth, work)
    assert [p[0] for p in ordered] == [0.0, 0.5, 0.75, 1.0]
    assert sorted(ordered) == sorted(timed), "the same points, only ordered"


def test_manual_single_is_the_ordinary_annotators_golden_accuracy_and_experts_do_not_count():
    log = {"label.submitted": [
        {"item_id": "g", "annotator_id": "ann-1", "role": "annotator", "label": "x", "occurred_at": at(0)},
        {"item_id": "g", "annotator_id": "ann-2", "role": "annotator", "label": "y", "occurred_at": at(0)},
        {"item_id": "h", "annotator_id": "ann-2", "role": "annotator", "label": "x", "occurred_at": at(0)},
        {"item_id": "g", "annotator_id": "exp", "role": "expert", "label": "y", "occurred_at": at(0)},
        {"item_id": "w", "annotator_id": "ann-1", "role": "annotator", "label": "y", "occurred_at": at(0)},
    ]}
    assert annotator_accuracy(log, {"g": "x", "h": "x"}) == 2 / 3
    assert annotator_accuracy({}, {"g": "x"}) is None


def test_the_fixed_threshold_baseline_takes_pre_labels_above_the_threshold_and_one_annotator_below():
    def routed(item, label, p, minute):
        return {"item_id": item, "tier": "single", "occurred_at": at(minute),
                "top_k": [{"label": label, "probability": p}, {"label": "z", "probability": 1 - p}]}

    log = {"item.routed": [routed("a", "x", 0.99, 0), routed("b", "y", 0.92, 1), routed("c", "x", 0.60, 2),
                           routed("c", "y", 0.99, 3),  # a re-route: the first pre-label counts
                           {"item_id": "d", "tier": "multi", "occurred_at": at(4), "top_k": []}]}
    truth = {"a": "x", "b": "x", "c": "x", "d": "x"}
    points = {t: (labels, acc) for t, labels, acc in
              fixed_threshold_baseline(log, truth, {"a", "b", "c", "d"}, 0.9, thresholds=(0.5, 0.95))}
    # 0.95: a auto (right); b, c, d by hand at 90%.
    assert points[0.95] == (0.75, (1 + 0.9 * 3) / 4)
    # 0.5: a right, b wrong, c right automatically; d (no pre-label) by hand.
    assert points[0.5] == (0.25, (2 + 0.9) / 4)
    assert fixed_threshold_baseline({}, truth, {"a"}, 0.9) == []


def test_checkpoints_count_every_paid_label_and_the_unchecked_auto_labels_so_far():
    log = {
        "label.submitted": [
            {"item_id": "b", "role": "annotator", "label": "x", "occurred_at": at(1.5)},
            {"item_id": "g", "role": "annotator", "label": "x", "occurred_at": at(1.6)},  # a golden answer
            {"item_id": "c", "role": "annotator", "label": "y", "occurred_at": at(2.5)},
            {"item_id": "c", "role": "expert", "label": "x", "occurred_at": at(3.5)},
        ],
        "label.finalized": [
            {"item_id": "a", "label": "y", "provenance": "auto", "occurred_at": at(0.5)},  # wrong auto label
            {"item_id": "b", "label": "x", "provenance": "single_review", "occurred_at": at(2)},
            {"item_id": "c", "label": "x", "provenance": "expert", "occurred_at": at(4)},
        ],
    }
    points = checkpoints(log, TRUTH, WORK, {"g": "x"}, every=2)
    assert [p["items"] for p in points] == [2, 3], "every 2 items, and the last"
    two, three = points
    assert (two["accuracy"], two["all_human_labels_per_item"], two["golden_labels_per_item"]) == (0.5, 1.0, 0.5)
    assert (two["auto_accepted"], two["auto_accepted_errors"]) == (1, 1)
    assert three["ordinary_labels_per_item"] == 2 / 3 and three["expert_labels_per_item"] == 1 / 3
    assert three["all_human_labels_per_item"] == 4 / 3 and three["accuracy"] == 2 / 3


def test_tier_errors_judge_each_item_at_its_first_tier_by_its_latest_label():
    errors = tier_errors(LOG, TRUTH, WORK)
    assert errors["auto"] == {"items": 1, "errors": 1, "error": 1.0}
    assert errors["single"] == {"items": 2, "errors": 0, "error": 0.0}, "c: first routed single, then expert"
