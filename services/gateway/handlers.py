"""The gateway's event handlers: routed, finalized and flagged items reach the task queues, the item histories and
the progress documents; every replica's index of open tasks hears routed and finalized items."""

from __future__ import annotations

from typing import Any

from schemas.events import Envelope, FlagKind, FlagSubject, ItemRouted, LabelFinalized, QcFlagged
from services.gateway.store import progress
from services.gateway.api import Gateway
from services.gateway.hints import FinalizedHint, Hint, RoutedHint
from services.gateway.store import history as entries

# The owned group's topics (item-keyed: one writer per item's documents) and the broadcast hints' topics.
TOPICS = tuple(sorted({ItemRouted.TOPIC, LabelFinalized.TOPIC, QcFlagged.TOPIC, *progress.TOPICS}))
HINT_TOPICS = (ItemRouted.TOPIC, LabelFinalized.TOPIC)


class GatewayHandlers:
    def __init__(self, gw: Gateway, item_progress: progress.Progress) -> None:
        self.gw = gw
        self.progress = item_progress

    async def on_hints(self, events: list[Hint]) -> None:
        """The broadcast's projections (services/gateway/hints.py), not whole events: every replica reads them all."""
        for event in events:
            if isinstance(event, RoutedHint):
                self.gw.queue.hear(event)
            elif isinstance(event, FinalizedHint):
                self.gw.queue.hints.close_item(event.project, event.item_id)

    async def on_events(self, events: list[Envelope]) -> None:
        history = []  # written in bulk after the batch: a round trip per event would halve the gateway's rate
        ops: list[tuple[str, Any]] = []  # the queue's changes, in order
        for event in events:
            if isinstance(event, ItemRouted):
                ops.append(("add", event))
                history.append(entries.routed(event))
            elif isinstance(event, LabelFinalized):
                ops.append(("close", (event.project, event.item_id)))
                history.append(entries.finalized(event))
            elif isinstance(event, QcFlagged):
                if event.item_id:
                    history.append(entries.flagged(event))
                if event.subject == FlagSubject.ANNOTATOR and event.kind == FlagKind.ANNOTATOR_SUSPENDED:
                    await self.gw.annotators.suspend(event.subject_id)
                    self.gw.forget_annotator(event.subject_id)  # here at once
                    ops.append(("requeue", event.subject_id))
        await self.gw.queue.apply(ops)
        await self.gw.history.add(history)
        await self.progress.on_events(events)  # item progress and final labels (services/gateway/store/progress.py)
