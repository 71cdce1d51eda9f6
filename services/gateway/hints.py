"""What each gateway replica's open-task index reads of the broadcast: lean projections of item.routed and
label.finalized, validated with the events' own field definitions (labelmesh/runtime/bus.py, `projection`).

Every replica reads every item.routed to keep its index (services/gateway/domain/candidates.py). Validating the
whole event (neighbours, thresholds, reasons, top-k label names...) took ~45 us per item, these projections ~7 us
(micro-timing over a bench's 3,083 item.routed); in a live burst, 0.139 -> 0.118 CPU-ms per item and replica, most of
the rest being small fetches, which FETCH_MIN_BYTES below gathers (0.043; bench/hint_broadcast.py, issue 19).
The owned group still validates the whole event and dead-letters what it refuses; a record these accept and the
owner refuses leaves at worst a candidate that is never confirmed by `_id` (a wasted probe), as any stale hint.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, create_model
from typing_extensions import TypedDict

from schemas.events import Envelope, ItemRouted, LabelFinalized, LabelScore


class Hint(BaseModel):
    """Base of the projections: the fields not listed are skipped, not validated."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    TOPIC: ClassVar[str]
    event_id: str


def _fields(event: type[Envelope], names: tuple[str, ...]) -> dict[str, Any]:
    """The event's own definitions (type, constraints, default) of these fields."""
    return {name: (event.model_fields[name].annotation, event.model_fields[name]) for name in names}


class ScoreHint(TypedDict):
    """A top-k entry's probability (a plain dict: a model instance per entry cost more than the rest together)."""

    probability: Annotated[float, LabelScore.model_fields["probability"]]


def _projection(event: type[Envelope], names: tuple[str, ...], **more: Any) -> type[Hint]:
    model = create_model(f"{event.__name__}Hint", __base__=Hint, **_fields(event, ("event_id", "type", *names)),
                         **more)
    model.TOPIC = event.TOPIC
    return model


# What TaskQueue.hear and OpenTasks.close_item read (services/gateway/queue.py, routed_candidate).
ROUTED_FIELDS = ("occurred_at", "project", "item_id", "tier", "required_annotators", "spot_check", "golden")
RoutedHint = _projection(ItemRouted, ROUTED_FIELDS, top_k=(tuple[ScoreHint, ...], ()))
FinalizedHint = _projection(LabelFinalized, ("project", "item_id"))
PROJECTION: dict[str, type[BaseModel]] = {ItemRouted.TOPIC: RoutedHint, LabelFinalized.TOPIC: FinalizedHint}

# The broadcast's fetches (labelmesh/runtime/bus.py): the broker answers once it holds 256 KiB (~200 item.routed) or
# after Kafka's default 500 ms wait. With Kafka's default minimum (1 byte) each replica fetched and handled a small
# batch at a time: 0.118 CPU-ms per routed item with the projection above, 0.043 with this minimum (3,000 item.routed
# at 550/s, bench/hint_broadcast.py). The price: a replica that does not own an item's partition hears of its task
# up to 0.5 s later when items trickle in (its owner hears of it on its own path once the task is stored).
FETCH_MIN_BYTES = 256 * 1024
FETCH_MAX_WAIT_MS = 500
