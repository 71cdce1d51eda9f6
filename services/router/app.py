"""The router service: decides who looks at each pre-labelled item, and learns its thresholds from evidence."""

from __future__ import annotations

import logging

import numpy as np
from prometheus_client import Counter, Gauge

from labelmesh.neighbours import LabelledIndex
from labelmesh.runtime.mongo import find_by_ids, upsert_many
from labelmesh.runtime.projects import ProjectCatalog
from labelmesh.runtime.service import ServiceRuntime
from schemas.events import (
    Envelope,
    FlagKind,
    FlagSubject,
    ItemPrelabeled,
    ItemRouted,
    LabelFinalized,
    LabelScore,
    ModelUpdated,
    Neighbour,
    Provenance,
    QcFlagged,
    Thresholds,
    Tier,
    derived_id,
    utcnow,
)
from services.router.domain import thresholds as learning
from services.router.domain.spot_check import is_spot_checked
from services.router.domain.tiers import Prelabel, RoutingPolicy, decide_tier
from services.router.domain.tiers import Thresholds as DomainThresholds
from services.router.settings import RouterSettings

SERVICE = "router"
log = logging.getLogger(__name__)


class Router:
    def __init__(self, rt: ServiceRuntime, settings: RouterSettings) -> None:
        self.rt = rt
        self.settings = settings
        self.catalog = ProjectCatalog(rt.db)
        self.indexes: dict[str, LabelledIndex] = {}
        self.thresholds: dict[str, Thresholds] = {}
        self.unlearned: dict[str, int] = {}
        self.routed = Counter(
            "labelmesh_router_items_total", "Items routed", ["project", "tier"], registry=rt.registry
        )
        self.threshold_gauge = Gauge(
            "labelmesh_router_threshold", "Confidence thresholds in force", ["project", "border"], registry=rt.registry
        )
        self.threshold_changes = Counter(
            "labelmesh_router_threshold_changes_total", "Threshold changes", ["project", "border"],
            registry=rt.registry,
        )

    def wire(self) -> None:
        bus = self.rt.bus
        self.catalog.attach(bus)
        bus.subscribe([ItemPrelabeled.TOPIC], self.on_prelabeled, max_records=500)
        bus.subscribe(
            [LabelFinalized.TOPIC, ModelUpdated.TOPIC, QcFlagged.TOPIC], self.on_feedback, name=f"{SERVICE}.feedback"
        )
        self.rt.on_start.append(self.restore)

    # --- state -----------------------------------------------------------------------------------
    async def restore(self) -> None:
        async for doc in self.rt.db["thresholds"].find():
            self.thresholds[doc["_id"]] = Thresholds(auto_accept=doc["auto_accept"], single_review=doc["single_review"])
        async for doc in self.rt.db["items"].find({"label": {"$exists": True}, "embedding": {"$exists": True}}):
            self._index(doc["project"]).upsert(doc["item_id"], doc["label"], np.frombuffer(doc["embedding"], np.float32))

    def _index(self, project: str) -> LabelledIndex:
        return self.indexes.setdefault(project, LabelledIndex())

    def _current(self, project: str) -> Thresholds:
        return self.thresholds.get(project) or Thresholds()

    async def _set_thresholds(self, project: str, new: Thresholds, reason: str, evidence: dict[str, object]) -> None:
        old = self._current(project)
        self.thresholds[project] = new
        for border in ("auto_accept", "single_review"):
            self.threshold_gauge.labels(project, border).set(getattr(new, border))
            if getattr(new, border) != getattr(old, border):
                self.threshold_changes.labels(project, border).inc()
        await self.rt.db["thresholds"].replace_one(
            {"_id": project}, {"auto_accept": new.auto_accept, "single_review": new.single_review}, upsert=True
        )
        await self.rt.db["threshold_changes"].insert_one(
            {"project": project, "at": utcnow(), "old": old.model_dump(), "new": new.model_dump(),
             "reason": reason, "evidence": evidence}
        )
        log.info("%s thresholds %s -> %s: %s", project, old, new, reason)

    # --- routing -----------------------------------------------------------------------------------
    async def on_prelabeled(self, events: list[Envelope]) -> None:
        routed: list[ItemRouted] = []
        docs: list[dict[str, object]] = []
        for event in events:
            assert isinstance(event, ItemPrelabeled)
            config = await self.catalog.require(event)
            vector = np.asarray(event.embedding, dtype=np.float32)
            docs.append(
                {"_id": f"{event.project}/{event.item_id}", "project": event.project, "item_id": event.item_id,
                 "embedding": vector.tobytes(), "top_k": [s.model_dump() for s in event.top_k],
                 "model_version": event.model_version}
            )
            if event.trusted:
                continue  # its label is already known; qc finalises it from item.ingested
            routed.append(self._route(event, vector, config.multi_annotators))
        if docs:
            # merge: a final label stored before the embedding arrived stays.
            existed = await upsert_many(self.rt.db["items"], docs, merge=True)
            # A final label can arrive before the item's embedding (topics are not ordered with each other);
            # only an item stored before this batch can have one, so only those are read back.
            for doc in await find_by_ids(self.rt.db["items"], [docs[i]["_id"] for i in existed]):
                if "label" not in doc:
                    continue
                self._index(doc["project"]).upsert(
                    doc["item_id"], doc["label"], np.frombuffer(doc["embedding"], np.float32)
                )
        if routed:
            await upsert_many(
                self.rt.db["decisions"], [{"_id": f"{r.project}/{r.item_id}", **r.model_dump(mode="json")} for r in routed]
            )
            await self.rt.bus.publish(routed)
        for r in routed:
            self.routed.labels(r.project, r.tier.value).inc()

    def _route(
        self, event: ItemPrelabeled, vector: np.ndarray, multi: int, *, disagreement: bool = False,
        open_flag: bool = False, cause: str = "routed",
    ) -> ItemRouted:
        thresholds = self._current(event.project)
        hits = self._index(event.project).nearest(vector, self.settings.neighbours, exclude=event.item_id)
        common = dict(
            event_id=derived_id(event.event_id, cause),
            producer=SERVICE,
            project=event.project,
            item_id=event.item_id,
            correlation_id=event.correlation_id,
            model_version=event.model_version,
            top_k=event.top_k,
            neighbours=tuple(Neighbour(item_id=h.item_id, label=h.label, similarity=max(-1.0, min(1.0, h.similarity)))
                             for h in hits),
            thresholds=thresholds,
        )
        if event.golden:
            return ItemRouted(**common, tier=Tier.SINGLE, required_annotators=0, golden=True,
                              reasons=("golden item: injected into annotators' streams",))
        policy = RoutingPolicy(multi, self.settings.expert_margin, self.settings.ood_similarity_floor)
        decision = decide_tier(
            # float32 dot products of unit vectors reach 1.0000001 for a duplicate text: clamp to a cosine.
            Prelabel([(s.label, s.probability) for s in event.top_k],
                     max(-1.0, min(1.0, hits[0].similarity)) if hits else None),
            DomainThresholds(thresholds.auto_accept, thresholds.single_review),
            policy,
            open_flag=open_flag,
            unresolved_disagreement=disagreement,
            spot_check=is_spot_checked(event.project, event.item_id, self.settings.spot_check_rate),
        )
        return ItemRouted(**common, tier=Tier(decision.tier.value), required_annotators=decision.required_annotators,
                          spot_check=decision.spot_check, reasons=decision.reasons)

    # --- feedback ----------------------------------------------------------------------------------
    async def on_feedback(self, events: list[Envelope]) -> None:
        for event in events:
            if isinstance(event, LabelFinalized):
                await self._on_final(event)
            elif isinstance(event, ModelUpdated):
                # The trainer's recommendation starts a project off; after that the router's own evidence
                # (spot checks, reviews) moves the thresholds. Adopting every recommendation undid that
                # evidence at each retrain and toggled auto-labelling on and off (bench/quality.py).
                if self.settings.adopt_every_recommendation or event.project not in self.thresholds:
                    recommended = event.recommended_thresholds
                    start = learning.starting_thresholds(
                        DomainThresholds(recommended.auto_accept, recommended.single_review),
                        self.settings.single_start if event.project not in self.thresholds else None,
                    )
                    await self._set_thresholds(
                        event.project, Thresholds(auto_accept=start.auto_accept, single_review=start.single_review),
                        f"trainer's recommendation for model v{event.model_version}"
                        + (f", single border starting at {start.single_review} (single_start)"
                           if start.single_review != recommended.single_review else ""),
                        {"heldout_metrics": event.heldout_metrics,
                         "training_set_version": event.training_set_version},
                    )
            elif isinstance(event, QcFlagged):
                await self._on_flag(event)

    async def _on_final(self, event: LabelFinalized) -> None:
        key = f"{event.project}/{event.item_id}"
        doc = await self.rt.db["items"].find_one_and_update(
            {"_id": key}, {"$set": {"label": event.label, "project": event.project, "item_id": event.item_id}},
            upsert=True,
        )
        if doc is not None and "embedding" in doc:
            self._index(event.project).upsert(event.item_id, event.label, np.frombuffer(doc["embedding"], np.float32))
        if not (event.verified and event.prelabel and event.provenance != Provenance.IMPORTED):
            return
        decision = await self.rt.db["decisions"].find_one({"_id": key}, {"spot_check": 1, "tier": 1})
        # Auto items are verified only when spot-checked; weighting them by 1/rate keeps the estimate unbiased.
        sampled = decision is not None and decision.get("tier") == Tier.AUTO.value
        weight = 1.0 / self.settings.spot_check_rate if sampled else 1.0
        await self.rt.db["evidence"].replace_one(
            {"_id": key},
            {"project": event.project, "confidence": event.prelabel.probability,
             "correct": event.prelabel.label == event.label, "weight": weight, "model_version": event.model_version},
            upsert=True,
        )
        self.unlearned[event.project] = self.unlearned.get(event.project, 0) + 1
        if self.unlearned[event.project] >= self.settings.relearn_every:
            self.unlearned[event.project] = 0
            await self.relearn(event.project)

    async def relearn(self, project: str) -> None:
        config = await self.catalog.get(project)
        evidence = [
            learning.Observation(d["confidence"], d["correct"], d["weight"])
            async for d in self.rt.db["evidence"].find({"project": project})
        ]
        current = self._current(project)
        update = learning.learn_thresholds(
            evidence,
            DomainThresholds(current.auto_accept, current.single_review),
            target_auto_error=config.target_auto_error if config else 0.02,
            target_single_error=self.settings.target_single_error,
            min_evidence=self.settings.min_evidence,
            step_up_when_refuted=self.settings.step_up_when_refuted,
            single_floor=self.settings.single_floor,
            auto_border_error=self.settings.auto_border_error,
        )
        new = Thresholds(auto_accept=update.thresholds.auto_accept, single_review=update.thresholds.single_review)
        if new != current:
            await self._set_thresholds(
                project, new, "; ".join(c.reason for c in update.changes if c.changed),
                {"changes": [
                    {"border": c.border.value, "n": c.n, "errors": c.errors, "bound": c.bound, "target": c.target,
                     "method": c.method} for c in update.changes
                ]},
            )

    async def _on_flag(self, event: QcFlagged) -> None:
        if event.subject == FlagSubject.MODEL:
            current = self._current(event.project)
            shifted = learning.conservative_shift(
                DomainThresholds(current.auto_accept, current.single_review), self.settings.conservative_shift
            ).thresholds
            await self._set_thresholds(
                event.project, Thresholds(auto_accept=shifted.auto_accept, single_review=shifted.single_review),
                f"model flagged: {event.message}", {"flag": event.event_id},
            )
            return
        if event.subject != FlagSubject.ITEM or event.kind not in (FlagKind.DISAGREEMENT, FlagKind.ANNOTATOR_FEEDBACK,
                                                                  FlagKind.KNN_INCONSISTENCY,
                                                                  FlagKind.SUSPENDED_ANNOTATOR_LABEL):
            return
        doc = await self.rt.db["items"].find_one({"_id": f"{event.project}/{event.subject_id}"})
        if doc is None:
            return
        prelabeled = ItemPrelabeled(
            event_id=event.event_id, producer=SERVICE, project=event.project, item_id=event.subject_id,
            correlation_id=event.correlation_id, model_version=doc.get("model_version"), encoder="stored",
            top_k=tuple(LabelScore(**s) for s in doc.get("top_k", [])),
        )
        config = await self.catalog.require(event)
        routed = self._route(
            prelabeled, np.frombuffer(doc["embedding"], np.float32), config.multi_annotators,
            disagreement=event.kind == FlagKind.DISAGREEMENT, open_flag=True, cause="rerouted",
        )
        await self.rt.db["decisions"].replace_one(
            {"_id": f"{routed.project}/{routed.item_id}"}, routed.model_dump(mode="json"), upsert=True
        )
        await self.rt.bus.publish([routed])
        self.routed.labels(routed.project, routed.tier.value).inc()


def create_app(settings: RouterSettings | None = None) -> ServiceRuntime:
    settings = settings or RouterSettings()
    rt = ServiceRuntime(SERVICE, settings)
    router = Router(rt, settings)
    router.wire()
    rt.component = router
    return rt
