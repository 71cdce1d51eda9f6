"""The qc service's wiring: its store, its two handlers and what each consumes (the rules are in domain/)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from labelmesh.runtime.projects import ProjectCatalog
from labelmesh.runtime.service import ServiceRuntime
from schemas.events import (
    Envelope,
    ItemIngested,
    ItemPrelabeled,
    ItemRouted,
    LabelFinalized,
    LabelSubmitted,
    QcEvidence,
    QcFlagged,
)
from services.qc.items import Items
from services.qc.metrics import QcMetrics
from services.qc.passes import SERVICE, Passes
from services.qc.settings import QcSettings
from services.qc.store import QcStore
from services.qc.tally import Tallies

# Item-keyed topics, read by one consumer group: the replica that owns an item's partition of one owns it in
# all (co-partitioned: same key, same partition count), so each item's documents have one writer. qc.flagged
# brings back qc's own decisions to send an item to an expert, taken by the owner of an annotator.
ITEM_TOPICS = (ItemIngested.TOPIC, ItemPrelabeled.TOPIC, ItemRouted.TOPIC, LabelSubmitted.TOPIC, QcFlagged.TOPIC)


class Qc:
    """What create_app wired, for tests and tools that inspect a running qc."""

    def __init__(self, rt: ServiceRuntime, settings: QcSettings) -> None:
        self.rt = rt
        self.settings = settings
        self.metrics = QcMetrics(rt.registry)
        self.store = QcStore(rt.db)
        self.catalog = ProjectCatalog(rt.db, settings.project_wait_s)
        self.items = Items(self.store, self.catalog, settings, self.metrics)
        self.tallies = Tallies(self.store, Passes(rt.db, settings, self.metrics), settings, self.metrics)

    @property
    def indexes(self) -> dict:  # type: ignore[type-arg]
        return self.items.indexes

    def wire(self) -> None:
        self.catalog.attach(self.rt.bus)
        self.rt.bus.subscribe(ITEM_TOPICS, self.on_events)
        # Its own group: the owner of a `project/annotator` or `project` key of qc.evidence owns those statistics.
        self.rt.bus.subscribe([QcEvidence.TOPIC], self.on_evidence, name=f"{SERVICE}.tally")
        self.rt.on_start.append(self.items.restore)
        self.rt.on_prune.append(self.store.prune_evidence)  # rows that only guard against duplicates (tally.py)
        # Every replica reads every final label into its kNN index (memory only).
        self.rt.bus.subscribe([LabelFinalized.TOPIC], self.items.on_finalized, name=f"{SERVICE}.index",
                              broadcast=True)

    def _publishing(self, handle: Callable[[list[Envelope]], Awaitable[list[Envelope]]]) -> Callable[
            [list[Envelope]], Awaitable[None]]:
        async def on_events(events: list[Envelope]) -> None:
            out = await handle(events)
            for f in {e.event_id: e for e in out if isinstance(e, QcFlagged)}.values():
                self.metrics.flags.labels(f.project, f.kind.value).inc()
            await self.rt.bus.publish(out)

        return on_events

    # The handlers as the bus calls them: each returns what to publish, published once it returned.
    @property
    def on_events(self) -> Callable[[list[Envelope]], Awaitable[None]]:
        return self._publishing(self.items.on_events)

    @property
    def on_evidence(self) -> Callable[[list[Envelope]], Awaitable[None]]:
        return self._publishing(self.tallies.on_events)


def create_app(settings: QcSettings | None = None) -> ServiceRuntime:
    settings = settings or QcSettings()
    rt = ServiceRuntime(SERVICE, settings)
    qc = Qc(rt, settings)
    qc.wire()
    rt.component = qc
    return rt
