"""The open-task index's lean projections of the broadcast (services/gateway/hints.py), and the bus's option."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from labelmesh.runtime.bus import EventBus, decode
from labelmesh.runtime.settings import CommonSettings
from schemas.events import ItemRouted, LabelFinalized, LabelScore, Neighbour, Provenance, Thresholds, Tier
from services.gateway.handlers import HINT_TOPICS
from services.gateway.hints import PROJECTION, FinalizedHint, RoutedHint
from services.gateway.queue import routed_candidate

ROUTED = ItemRouted(producer="router", project="p", item_id="i1", tier=Tier.MULTI, required_annotators=3,
                    spot_check=True,
                    top_k=(LabelScore(label="a", probability=0.5), LabelScore(label="b", probability=0.3)),
                    neighbours=(Neighbour(item_id="n", label="a", similarity=0.9),), thresholds=Thresholds(),
                    reasons=("torn",), counted=("x",))
FINAL = LabelFinalized(producer="qc", project="p", item_id="i1", label="a", version=1, provenance=Provenance.CONSENSUS,
                       confidence=0.9, human_labels=3, expert_labels=0, verified=True)


def _record(event: object, topic: str) -> SimpleNamespace:
    raw = event if isinstance(event, bytes) else event.model_dump_json().encode()  # type: ignore[attr-defined]
    return SimpleNamespace(value=raw, topic=f"ns.{topic}")


def test_the_index_gets_the_same_candidate_from_the_projection_as_from_the_event() -> None:
    for spot_check in (True, False):
        event = ROUTED.model_copy(update={"spot_check": spot_check})
        hint = decode(_record(event, ItemRouted.TOPIC), "ns.", PROJECTION)
        assert isinstance(hint, RoutedHint) and hint.TOPIC == ItemRouted.TOPIC
        assert routed_candidate(hint) == routed_candidate(event)
        assert (hint.golden, hint.required_annotators) == (event.golden, event.required_annotators)
    final = decode(_record(FINAL, LabelFinalized.TOPIC), "ns.", PROJECTION)
    assert isinstance(final, FinalizedHint) and (final.event_id, final.project, final.item_id) == (
        FINAL.event_id, "p", "i1")


def test_every_hint_topic_has_a_projection_of_its_own_event() -> None:
    assert set(PROJECTION) == set(HINT_TOPICS)
    assert all(PROJECTION[topic].model_fields["type"].default == topic for topic in PROJECTION)


@pytest.mark.parametrize("raw, why", [
    (ROUTED.model_dump_json().replace('"probability":0.5', '"probability":1.5'), "less than or equal to 1"),
    (ROUTED.model_dump_json().replace('"tier":"multi"', '"tier":"loud"'), "tier"),
    (ROUTED.model_dump_json().replace('"project":"p"', '"project":"Bad Project"'), "project"),
    (ROUTED.model_dump_json().replace('"required_annotators":3', '"required_annotators":-1'), "required_annotators"),
    ('{"type": "item.routed"}', "Field required"),
    ("not json", "Invalid JSON"),
])
def test_a_malformed_event_is_refused_with_its_reason(raw: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        decode(_record(raw.encode(), ItemRouted.TOPIC), "ns.", PROJECTION)


def test_an_event_on_the_wrong_topic_or_a_topic_without_projection_is_refused() -> None:
    with pytest.raises(ValidationError, match="item.routed"):
        decode(_record(FINAL, ItemRouted.TOPIC), "ns.", PROJECTION)
    with pytest.raises(ValueError, match="no projection for topic"):
        decode(_record(ROUTED, "qc.flagged"), "ns.", PROJECTION)
    with pytest.raises(ValueError, match="empty record"):
        decode(SimpleNamespace(value=None, topic="ns.item.routed"), "ns.", PROJECTION)


def test_a_projection_is_for_a_broadcast_of_its_topics_only() -> None:
    bus = EventBus(CommonSettings(), "svc", CollectorRegistry())

    async def handler(events: list[object]) -> None:
        return None

    with pytest.raises(ValueError, match="broadcast=True"):
        bus.subscribe(list(HINT_TOPICS), handler, projection=PROJECTION)
    with pytest.raises(ValueError, match="qc.flagged"):
        bus.subscribe([*HINT_TOPICS, "qc.flagged"], handler, broadcast=True, projection=PROJECTION)
