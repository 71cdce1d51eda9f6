"""qc's documents to domain objects and back, without a database."""

from schemas.events import EvidenceKind, Provenance, Tier
from services.qc.domain.tally import AnnotatorTally, ProjectTally
from services.qc.finalize import ItemState, Vote
from services.qc.evidence import fact
from services.qc.store import (annotator_fields, annotator_tally, item_state, project_fields, project_tally,
                               recent_facts)


def test_an_item_document_becomes_the_state_the_decision_reads():
    doc = {"_id": "p/i", "tier": "single", "required": 1, "prelabel": ["a", 0.8], "escalated": True,
           "routed_top_k": [{"label": "a", "probability": 0.8}, {"label": "b", "probability": 0.2}],
           "votes": [{"annotator": "ann", "label": "b", "expert": False, "event_id": "e1"}],
           "final": {"label": "b", "provenance": Provenance.SINGLE_REVIEW.value, "version": 1}}
    assert item_state(doc) == ItemState(tier=Tier.SINGLE, required=1, escalated=True, prelabel=("a", 0.8),
                                        top_k=(("a", 0.8), ("b", 0.2)), votes=(Vote("ann", "b"),), final_label="b")
    assert item_state({"_id": "p/new"}) == ItemState(), "a document with nothing known yet waits for routing"


def test_tallies_round_trip_through_their_documents_with_the_golden_bounds_beside():
    tally = AnnotatorTally(labels=7, golden_n=10, golden_correct=2, verdicts_n=3, verdicts_upheld=1)
    fields = annotator_fields(tally)
    assert annotator_tally({"_id": "p/ann", "suspended": True, **fields}) == tally
    assert fields["golden_lower"] < 0.2 < fields["golden_upper"] < 0.6
    assert annotator_tally(None) == AnnotatorTally()
    project = ProjectTally(labels=9, finals=4, spot_n=2, spot_correct=1)
    assert project_tally(project_fields(project)) == project and project_tally(None) == ProjectTally()


def test_recent_facts_keep_only_the_latest_ids() -> None:
    facts = [fact("p", "a", EvidenceKind.GOLDEN, f"e{i}", f"g{i}", True) for i in range(5)]
    doc = {"recent_facts": ["old-1", "old-2"]}
    assert recent_facts(doc, facts, keep=4) == [f.event_id for f in facts[1:]], "bounded: the oldest go"
    assert recent_facts(None, facts[:1], keep=4) == [facts[0].event_id]
    assert recent_facts(doc, [], keep=4) == ["old-1", "old-2"]
