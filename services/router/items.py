"""The item owner: routes each pre-labelled item, stores its final label, turns verified pre-labels and model
flags into threshold evidence, and re-routes flagged items.

One consumer group reads item.prelabeled, label.finalized and qc.flagged, all keyed by item with equal
partition counts, so one replica owns an item's partition of all three and alone writes its `items` and
`decisions` documents.
"""

from __future__ import annotations

import numpy as np
from prometheus_client import Counter

from labelmesh.runtime.mongo import find_by_ids, upsert_many
from labelmesh.runtime.projects import ProjectCatalog
from labelmesh.runtime.service import ServiceRuntime
from schemas.events import (
    Envelope,
    ThresholdEvidenceKind,
    FlagKind,
    FlagSubject,
    ItemPrelabeled,
    ItemRouted,
    LabelFinalized,
    LabelScore,
    Neighbour,
    Provenance,
    QcFlagged,
    ThresholdEvidence,
    Tier,
    derived_id,
)
from schemas.keys import item_key
from schemas.spans import Span
from services.router.cache import ReplicaCache
from services.router.domain.evidence import prelabel_correct, provisional_verdict, sample_weight
from services.router.domain.spot_check import is_evidence_draw, is_spot_checked
from services.router.domain.tiers import Prelabel, RoutingPolicy, decide_tier
from services.router.settings import SERVICE, RouterSettings

REROUTED_KINDS = (FlagKind.DISAGREEMENT, FlagKind.ANNOTATOR_FEEDBACK, FlagKind.KNN_INCONSISTENCY,
                  FlagKind.SUSPENDED_ANNOTATOR_LABEL, FlagKind.SECOND_OPINION)
DISPUTES = (FlagKind.DISAGREEMENT, FlagKind.SECOND_OPINION)  # a human voted against the pre-label


class ItemOwner:
    def __init__(self, rt: ServiceRuntime, settings: RouterSettings, catalog: ProjectCatalog,
                 cache: ReplicaCache) -> None:
        self.rt = rt
        self.settings = settings
        self.catalog = catalog
        self.cache = cache
        self.routed = Counter(
            "labelmesh_router_items_total", "Items routed", ["project", "tier"], registry=rt.registry
        )

    async def handle(self, events: list[Envelope]) -> None:
        await self.cache.refresh({e.project for e in events})
        prelabeled = [e for e in events if isinstance(e, ItemPrelabeled)]
        if prelabeled:
            await self._on_prelabeled(prelabeled)
        finals = [e for e in events if isinstance(e, LabelFinalized)]
        if finals:
            await self._on_finals(finals)
        for event in events:
            if isinstance(event, QcFlagged):
                await self._on_flag(event)

    async def _on_prelabeled(self, events: list[ItemPrelabeled]) -> None:
        routed: list[ItemRouted] = []
        docs: list[dict[str, object]] = []
        for event in events:
            config = await self.catalog.require(event)
            vector = np.asarray(event.embedding, dtype=np.float32)
            docs.append(
                {"_id": item_key(event.project, event.item_id), "project": event.project, "item_id": event.item_id,
                 "embedding": vector.tobytes(), "encoder": event.encoder,
                 "top_k": [s.model_dump() for s in event.top_k], "model_version": event.model_version,
                 # Spans items: the pre-labelled entities, which a verified final is compared with.
                 **({"spans": [s.model_dump() for s in event.spans]} if event.spans is not None else {})}
            )
            if event.trusted:
                continue  # its label is already known; qc finalises it from item.ingested
            routed.append(self._route(event, vector, config.multi_annotators))
        # merge: a final label stored before the embedding arrived stays.
        existed = await upsert_many(self.rt.db["items"], docs, merge=True)
        # A final label can arrive before the item's embedding (topics are not ordered with each other);
        # only an item stored before this batch can have one, so only those are read back.
        for doc in await find_by_ids(self.rt.db["items"], [docs[i]["_id"] for i in existed]):
            if "label" in doc:
                self.cache.index_doc(doc)
        if routed:
            await upsert_many(
                self.rt.db["decisions"],
                [{"_id": item_key(r.project, r.item_id), **r.model_dump(mode="json")} for r in routed],
            )
            await self.rt.bus.publish(routed)
        for r in routed:
            self.routed.labels(r.project, r.tier.value).inc()

    def _route(
        self, event: ItemPrelabeled, vector: np.ndarray, multi: int, *, disagreement: bool = False,
        open_flag: bool = False, cause: str = "routed", second_opinion: bool = False, counted: tuple[str, ...] = (),
    ) -> ItemRouted:
        thresholds = self.cache.current(event.project)
        hits = self.cache.index(event.project).nearest(vector, self.settings.neighbours, exclude=event.item_id)
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
            spans=event.spans,
        )
        if event.golden:
            return ItemRouted(**common, tier=Tier.SINGLE, required_annotators=0, golden=True,
                              reasons=("golden item: injected into annotators' streams",))
        policy = RoutingPolicy(multi, self.settings.expert_margin, self.settings.ood_similarity_floor)
        decision = decide_tier(
            # float32 dot products of unit vectors reach 1.0000001 for a duplicate text: clamp to a cosine.
            Prelabel([(s.label, s.probability) for s in event.top_k],
                     max(-1.0, min(1.0, hits[0].similarity)) if hits else None),
            thresholds,
            policy,
            open_flag=open_flag,
            unresolved_disagreement=disagreement,
            spot_check=is_spot_checked(event.project, event.item_id, self.settings.spot_check_rate),
            evidence_draw=is_evidence_draw(event.project, event.item_id, self.settings.evidence_draw_rate),
            second_opinion=second_opinion,
        )
        return ItemRouted(**common, tier=decision.tier, required_annotators=decision.required_annotators,
                          spot_check=decision.spot_check, reasons=decision.reasons,
                          counted=counted if decision.tier is Tier.MULTI else ())

    async def _on_finals(self, events: list[LabelFinalized]) -> None:
        evidence: list[ThresholdEvidence] = []
        if self.settings.rescore_with_champion:  # only finals read the champion (_champion_verdict)
            await self.cache.champions.refresh({e.project for e in events})
        for event in events:
            key = item_key(event.project, event.item_id)
            doc = await self.rt.db["items"].find_one_and_update(
                {"_id": key}, {"$set": {"label": event.label, "golden": event.golden, "project": event.project,
                          "item_id": event.item_id}},
                upsert=True,
            )
            if doc is not None and "embedding" in doc:
                self.cache.index_doc({**doc, "label": event.label, "golden": event.golden})
            if not (event.verified and event.prelabel and event.provenance != Provenance.IMPORTED):
                continue
            correct = prelabel_correct(event.prelabel.label, event.label, (doc or {}).get("spans"), event.spans)
            if correct is None:
                continue
            confidence, version = event.prelabel.probability, event.model_version
            if (verdict := self._champion_verdict(event, doc)) is not None:
                confidence, correct, version = verdict
            evidence.append(ThresholdEvidence(
                event_id=derived_id(event.event_id, "evidence"), producer=SERVICE, project=event.project,
                item_id=event.item_id, correlation_id=event.correlation_id, occurred_at=event.occurred_at,
                kind=ThresholdEvidenceKind.VERIFIED, confidence=confidence,
                correct=correct, model_version=version,
                weight=await self._weight(key),
            ))
        if evidence:
            await self.rt.bus.publish(evidence)

    def _champion_verdict(self, event: LabelFinalized, doc: dict[str, object] | None
                          ) -> tuple[float, bool, int] | None:
        """A verified item's evidence as its project's champion sees it (confidence, correct, version), when the
        champion is newer than the model that pre-labelled it (champion.py says why): the auto border is applied to
        the champion's confidences, on new items and re-scored queued ones, so it is learned on them too. The item
        is not in the champion's training set (only final labels are, and this one is final just now)."""
        champion = self.cache.champions.get(event.project)
        if (champion is None or doc is None or event.spans is not None
                or doc.get("spans") is not None or "embedding" not in doc
                or (event.model_version is not None and event.model_version >= champion.version)):
            return None
        vector = np.frombuffer(doc["embedding"], np.float32)  # type: ignore[arg-type]
        if not champion.fits(vector, doc.get("encoder")):  # type: ignore[arg-type]
            return None
        (top, *_), = champion.scores(vector[None, :])
        return top.probability, top.label == event.label, champion.version

    async def _on_flag(self, event: QcFlagged) -> None:
        if event.subject == FlagSubject.MODEL:
            await self.rt.bus.publish([ThresholdEvidence(
                event_id=derived_id(event.event_id, "evidence"), producer=SERVICE, project=event.project,
                correlation_id=event.correlation_id, occurred_at=event.occurred_at, kind=ThresholdEvidenceKind.MODEL_FLAGGED,
                reason=f"model flagged: {event.message}", details={"flag": event.event_id},
            )])
            return
        if event.subject != FlagSubject.ITEM or event.kind not in REROUTED_KINDS:
            return
        doc = await self.rt.db["items"].find_one({"_id": item_key(event.project, event.subject_id)})
        if doc is None or "embedding" not in doc:
            return
        spans = doc.get("spans")
        # A spans item's votes are whole span sets, not labels: its evidence waits for the final.
        if event.kind in DISPUTES and spans is None:
            await self._provisional_evidence(event, doc)
        prelabeled = ItemPrelabeled(
            event_id=event.event_id, producer=SERVICE, project=event.project, item_id=event.subject_id,
            correlation_id=event.correlation_id, model_version=doc.get("model_version"), encoder="stored",
            top_k=tuple(LabelScore(**s) for s in doc.get("top_k", [])),
            spans=tuple(Span(**s) for s in spans) if spans is not None else None,
        )
        config = await self.catalog.require(event)
        vector = np.frombuffer(doc["embedding"], np.float32)
        if event.kind == FlagKind.SECOND_OPINION:
            votes = event.evidence.get("votes")
            counted = tuple(str(v[0]) for v in votes if isinstance(v, list) and v) if isinstance(votes, list) else ()
            # The first reviewer's label counts towards the two (the gateway fills their slot).
            routed = self._route(prelabeled, vector, config.multi_annotators, cause="second-opinion",
                                 second_opinion=True, counted=counted)
        else:
            routed = self._route(prelabeled, vector, config.multi_annotators,
                                 disagreement=event.kind == FlagKind.DISAGREEMENT, open_flag=True, cause="rerouted")
        # Its own document, named by the flag: a flag keyed by subject may sit on another partition than the
        # item, and `decisions` keeps one writer (the item's owner).
        await self.rt.db["reroutes"].replace_one(
            {"_id": routed.event_id}, routed.model_dump(mode="json"), upsert=True
        )
        await self.rt.bus.publish([routed])
        self.routed.labels(routed.project, routed.tier.value).inc()

    async def _provisional_evidence(self, event: QcFlagged, doc: dict[str, object]) -> None:
        """The disputed pre-label as threshold evidence until the final label's evidence replaces it (same row,
        the item's; domain/evidence.py provisional_verdict says why)."""
        top = (doc.get("top_k") or [None])[0]
        shown = event.evidence.get("prelabel")
        label, probability = (shown[0], shown[1]) if isinstance(shown, list) and len(shown) == 2 else (
            (top["label"], top["probability"]) if top else (None, None))
        votes, posterior = event.evidence.get("votes"), event.evidence.get("posterior")
        verdict = provisional_verdict(label, votes, posterior if isinstance(posterior, (int, float)) else None) \
            if label is not None and isinstance(votes, list) else None
        if verdict is None:
            return
        correct, share = verdict
        await self.rt.bus.publish([ThresholdEvidence(
            event_id=derived_id(event.event_id, "provisional-evidence"), producer=SERVICE, project=event.project,
            item_id=event.subject_id, correlation_id=event.correlation_id, occurred_at=event.occurred_at,
            kind=ThresholdEvidenceKind.VERIFIED, confidence=float(probability), correct=correct,
            model_version=doc.get("model_version"),
            weight=share * await self._weight(item_key(event.project, event.subject_id)),
        )])

    async def _weight(self, key: str) -> float:
        """A verified pre-label's weight as evidence: the inverse of the chance its item's first decision had it
        checked (domain/evidence.py sample_weight)."""
        decision = await self.rt.db["decisions"].find_one({"_id": key}, {"tier": 1})
        return sample_weight(decision.get("tier") if decision else None, self.settings.spot_check_rate)
