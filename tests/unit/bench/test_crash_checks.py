"""The crash bench's golden checks (bench/crash_recovery.py) on hand-made stores and topics: each can fail."""

from __future__ import annotations

from typing import Any

from bench.crash_recovery import ERRING, ERROR_RATE, GOLDEN_CHECKS, LABELS, PROJECT, answer, golden_invariants

GOLDEN = {"g1": "card_arrival", "g2": "pin_blocked"}


def submitted(event_id: str, annotator: str, item: str, label: str, golden: bool = True) -> dict[str, Any]:
    return {"event_id": event_id, "project": PROJECT, "annotator_id": annotator, "item_id": item, "label": label,
            "golden": golden, "task_id": f"t-{item}"}


def finalized(item: str, label: str, version: int = 1, golden: bool = True) -> dict[str, Any]:
    return {"project": PROJECT, "item_id": item, "label": label, "version": version, "golden": golden,
            "provenance": "imported"}


def healthy() -> dict[str, Any]:
    """A run where everything about golden items holds: ann-1 right on g1, wrong on g2."""
    return {
        "golden": dict(GOLDEN),
        "finals": {i: {"label": g, "version": 1} for i, g in GOLDEN.items()},
        "finalized": [finalized(i, g) for i, g in GOLDEN.items()],
        "submitted": [submitted("e1", "ann-1", "g1", "card_arrival"), submitted("e2", "ann-1", "g2", "exchange_rate")],
        "routed": [{"project": PROJECT, "item_id": i, "golden": True, "required_annotators": 0, "neighbours": []}
                   for i in GOLDEN],
        "qc_items": {i: {"item_id": i, "golden_label": g} for i, g in GOLDEN.items()},
        "tally": {"ann-1": (2, 1)},
        "holdout": {i: (True, True) for i in GOLDEN},
    }


def failing(run: dict[str, Any]) -> list[str]:
    out = golden_invariants(**run)
    return [name for name in GOLDEN_CHECKS if out[name]]


def test_a_healthy_run_breaks_no_golden_check() -> None:
    out = golden_invariants(**healthy())
    assert [name for name in GOLDEN_CHECKS if out[name]] == []
    assert (out["golden_answers"], out["golden_answers_wrong"]) == (2, 1)


def test_a_golden_answer_counted_twice_or_scored_right_when_wrong_is_caught() -> None:
    for tally in ({"ann-1": (3, 1)}, {"ann-1": (2, 2)}, {"ann-1": (1, 1)}, {"ann-1": (2, 1), "ann-2": (1, 0)}):
        run = healthy() | {"tally": tally}
        assert failing(run) == ["golden_counted_wrong"], tally


def test_a_golden_item_finalised_from_a_vote_or_served_as_work_is_caught() -> None:
    run = healthy()
    run["finalized"].append(finalized("g1", "exchange_rate", version=2))
    run["finals"]["g1"] = {"label": "exchange_rate", "version": 2}
    run["qc_items"]["g1"]["votes"] = [{"event_id": "e1"}]
    run["submitted"].append(submitted("e3", "ann-2", "g1", "card_arrival", golden=False))
    run["tally"]["ann-2"] = (0, 0)
    assert failing(run) == ["golden_final_not_its_answer", "golden_finals_changed", "golden_answers_as_votes",
                            "golden_items_served_as_work"]


def test_a_golden_item_shown_answered_twice_or_trained_on_is_caught() -> None:
    run = healthy()
    run["routed"].append({"project": PROJECT, "item_id": "w1", "golden": False, "required_annotators": 3,
                          "neighbours": [{"item_id": "g2", "label": "pin_blocked", "similarity": 0.9}]})
    run["submitted"].append(submitted("e4", "ann-1", "g1", "card_arrival"))
    run["tally"] = {"ann-1": (3, 2)}
    run["holdout"]["g2"] = (True, False)
    assert failing(run) == ["golden_items_shown_as_neighbours", "golden_items_answered_twice_by_one_annotator",
                            "golden_items_trained_on"]


def test_the_erring_annotator_errs_on_about_its_share_of_items_and_the_others_never() -> None:
    truth = {f"i{n}": LABELS[n % len(LABELS)] for n in range(4000)}
    wrong = [i for i in truth if answer(ERRING, i, truth) != truth[i]]
    assert abs(len(wrong) / len(truth) - ERROR_RATE) < 0.015
    assert all(answer(ERRING, i, truth) in LABELS for i in wrong)
    assert all(answer("ann-0", i, truth) == truth[i] for i in truth)
