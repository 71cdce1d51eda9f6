"""The router service: decides who looks at each pre-labelled item, and learns its thresholds from evidence.

Who writes what, with any number of replicas (DESIGN.md, "Replicas and ownership"):
- group `<ns>.router` reads item.prelabeled, label.finalized and qc.flagged, all keyed by item and
  co-partitioned, so one replica owns an item's partition of all three: it alone writes the item's `items`
  and `decisions` documents (and `reroutes`, whose ids derive from the flag) (items.py);
- group `<ns>.router.thresholds` reads threshold.evidence (keyed by project) and model.updated: the owner of
  a project's partition alone writes its thresholds, evidence and threshold changes (thresholds_owner.py);
- every replica routes with the thresholds in force, re-read by `_id` at each batch, and keeps a neighbour
  index of every labelled item in memory (cache.py).
"""

from __future__ import annotations

from labelmesh.runtime.projects import ProjectCatalog
from labelmesh.runtime.service import ServiceRuntime
from schemas.events import ItemPrelabeled, LabelFinalized, ModelUpdated, QcFlagged, ThresholdEvidence
from services.router.cache import ReplicaCache
from services.router.items import ItemOwner
from services.router.settings import SERVICE, RouterSettings
from services.router.thresholds_owner import ThresholdOwner


class Router:
    """The router's parts, wired to the bus: what tests and tools inspect as the runtime's component."""

    def __init__(self, rt: ServiceRuntime, settings: RouterSettings) -> None:
        self.rt = rt
        self.catalog = ProjectCatalog(rt.db, settings.project_wait_s)
        self.cache = ReplicaCache(rt)
        self.items = ItemOwner(rt, settings, self.catalog, self.cache)
        self.thresholds = ThresholdOwner(rt, settings, self.catalog)

    def wire(self) -> None:
        bus = self.rt.bus
        self.catalog.attach(bus)
        bus.subscribe([ItemPrelabeled.TOPIC, LabelFinalized.TOPIC, QcFlagged.TOPIC], self.items.handle,
                      max_records=500)
        bus.subscribe([ThresholdEvidence.TOPIC, ModelUpdated.TOPIC], self.thresholds.handle,
                      name=f"{SERVICE}.thresholds")
        # Every replica sees every final label (memory only), for its neighbour index.
        bus.subscribe([LabelFinalized.TOPIC], self.cache.learn_labels, name=f"{SERVICE}.labels", broadcast=True)
        self.rt.on_start.append(self.cache.restore)


def create_app(settings: RouterSettings | None = None) -> ServiceRuntime:
    settings = settings or RouterSettings()
    rt = ServiceRuntime(SERVICE, settings)
    router = Router(rt, settings)
    router.wire()
    rt.component = router
    return rt
