"""Final-label history: versions grow on relabel with history kept, replays add nothing, costs add up exactly."""

from decimal import Decimal

import pytest

from schemas.events import Provenance
from services.qc.domain.final_label import (
    LabelHistory,
    correction_provenance,
    human_cost,
    record_final,
)


def test_relabel_adds_a_version_and_keeps_the_old_one():
    history = LabelHistory("item-1")
    assert history.current is None and history.next_version == 1
    history, v1 = record_final(history, "refund", Provenance.AUTO, 0.97, human_labels=0, expert_labels=0)
    assert v1.version == 1 and history.next_version == 2
    provenance = correction_provenance(history, "card_lost", Provenance.EXPERT)
    assert provenance is Provenance.CORRECTED
    history, v2 = record_final(history, "card_lost", provenance, 1.0, human_labels=1, expert_labels=1,
                               reason="spot check disagreed")
    assert [v.version for v in history.versions] == [1, 2]
    assert [v.label for v in history.versions] == ["refund", "card_lost"]
    assert history.current == v2 and v2.provenance is Provenance.CORRECTED and v2.reason == "spot check disagreed"
    assert history.versions[0] == v1  # the earlier version is kept unchanged


def test_replay_or_an_extra_agreeing_vote_adds_nothing():
    history, _ = record_final(LabelHistory("i"), "refund", Provenance.CONSENSUS, 0.9, human_labels=3,
                              expert_labels=0)
    same, new = record_final(history, "refund", Provenance.CONSENSUS, 0.95, human_labels=4, expert_labels=0)
    assert new is None and same is history
    # The same label confirmed a different way is a new version: provenance is part of the record.
    verified, v2 = record_final(history, "refund", Provenance.EXPERT, 1.0, human_labels=3, expert_labels=1)
    assert v2.version == 2 and len(verified.versions) == 2
    assert correction_provenance(history, "refund", Provenance.EXPERT) is Provenance.EXPERT


def test_spent_labels_never_go_down():
    history, _ = record_final(LabelHistory("i"), "x", Provenance.CONSENSUS, 0.9, human_labels=3, expert_labels=0)
    with pytest.raises(ValueError, match="cumulative"):
        record_final(history, "y", Provenance.EXPERT, 1.0, human_labels=2, expert_labels=1)
    with pytest.raises(ValueError):
        record_final(history, "y", Provenance.EXPERT, 1.5, human_labels=3, expert_labels=1)


def test_cost_uses_exact_cents_and_configurable_prices():
    assert human_cost(3, 0) == Decimal("0.30")  # 3 x 0.1 in float would be 0.30000000000000004
    assert human_cost(2, 1) == Decimal("0.70")
    assert human_cost(2, 1, label_price="0.25", expert_price=2) == Decimal("2.50")
    assert sum(human_cost(1, 0) for _ in range(100_000)) == Decimal("10000.00")
    history, _ = record_final(LabelHistory("i"), "x", Provenance.CONSENSUS, 0.8, human_labels=3, expert_labels=0)
    history, final = record_final(history, "y", Provenance.CORRECTED, 1.0, human_labels=3, expert_labels=1)
    assert final.cost() == Decimal("0.80")
    assert history.versions[0].cost() == Decimal("0.30")
    with pytest.raises(ValueError):
        human_cost(1, 0, label_price=-0.1)
    # An auto label costs nothing in human time.
    assert record_final(LabelHistory("a"), "x", Provenance.AUTO, 0.99, human_labels=0, expert_labels=0)[1].cost() == 0
